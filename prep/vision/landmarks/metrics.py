"""Landmark track quality: nose-bridge jitter after removing head motion, filter lag.

`bridge_midpoint_rms_px` is measured on the nose-bridge points (68-point ids 27-30), which move
rigidly with the head: frames t-1 and t+1 are aligned to frame t by a 2D similarity fitted on the
rigid points (eye corners and nose bridge), and the metric is the RMS of
``p_t - (p'_{t-1} + p'_{t+1}) / 2`` in pixels. Smooth head motion (even fast) leaves this near
zero; detector noise does not.
"""

from __future__ import annotations

import numpy as np

from prep.vision.landmarks.mapping import NOSE_BRIDGE_68

RIGID_68 = np.array([27, 28, 29, 30, 36, 39, 42, 45])


def similarity_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity (Umeyama) mapping `src` onto `dst`, batched.

    Args:
        src: (T, K, 2) points.
        dst: (T, K, 2) points.

    Returns:
        (T, 2, 3) affine matrices A with ``dst ~ src @ A[:, :, :2].T + A[:, :, 2]``.
    """
    mu_s, mu_d = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    s, d = src - mu_s, dst - mu_d
    cov = np.einsum("tki,tkj->tij", d, s) / src.shape[1]
    u, sig, vt = np.linalg.svd(cov)
    det = np.sign(np.linalg.det(u @ vt))
    e = np.ones((len(src), 2))
    e[:, 1] = det
    rot = u @ (e[:, :, None] * vt)
    var = (s**2).sum(axis=(1, 2)) / src.shape[1]
    scale = (sig * e).sum(1) / np.maximum(var, 1e-12)
    a = scale[:, None, None] * rot
    t = mu_d[:, 0] - np.einsum("tij,tj->ti", a, mu_s[:, 0])
    return np.concatenate([a, t[:, :, None]], axis=2)


def _apply(aff: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.einsum("tij,tkj->tki", aff[:, :, :2], pts) + aff[:, None, :, 2]


def bridge_midpoint_rms_px(
    points_px: np.ndarray, valid: np.ndarray, idx: np.ndarray = NOSE_BRIDGE_68
) -> float:
    """RMS second-difference residual of points `idx` after per-triplet head-motion removal.

    Args:
        points_px: (T, 68, 2) tracks.
        valid: (T,) bool; only triplets of three valid frames count.
        idx: 68-point ids to measure.

    Returns:
        RMS deviation from the aligned temporal midpoint in pixels (NaN when no triplet is valid).
    """
    ok = valid[:-2] & valid[1:-1] & valid[2:]
    if not ok.any():
        return float("nan")
    prev, cur, nxt = points_px[:-2][ok], points_px[1:-1][ok], points_px[2:][ok]
    a_prev = similarity_align(prev[:, RIGID_68], cur[:, RIGID_68])
    a_next = similarity_align(nxt[:, RIGID_68], cur[:, RIGID_68])
    mid = 0.5 * (_apply(a_prev, prev[:, idx]) + _apply(a_next, nxt[:, idx]))
    return float(np.sqrt(np.mean(np.sum((cur[:, idx] - mid) ** 2, axis=-1))))


def window_by_speed(points_px: np.ndarray, valid: np.ndarray, length: int, fastest: bool) -> slice:
    """The `length`-frame window of all-valid frames whose nose tip moves least (or most)."""
    tip = points_px[:, 30]
    speed = np.linalg.norm(np.diff(tip, axis=0), axis=-1)
    speed = np.where(valid[1:] & valid[:-1], speed, np.nan)
    n = len(speed) - length + 2
    if n <= 0:
        return slice(0, len(points_px))
    csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(speed, nan=1e9))])
    mean = (csum[length - 1 :] - csum[: -(length - 1)]) / (length - 1)
    bad = mean > 1e8
    if bad.all():
        return slice(0, len(points_px))
    mean = np.where(bad, -np.inf if fastest else np.inf, mean)
    i0 = int(np.argmax(mean) if fastest else np.argmin(mean))
    return slice(i0, i0 + length)


def lag_frames(raw_px: np.ndarray, filt_px: np.ndarray, max_lag: int = 5) -> float:
    """Delay of the filtered nose-tip track behind the raw one (best-matching shift, frames).

    NaN when no shift can be compared: fewer than two consecutive frames with a nose tip in
    both tracks (a single photo, or a clip where the face is found only in isolated frames).
    """
    vr = np.diff(raw_px[:, 30], axis=0)
    vf = np.diff(filt_px[:, 30], axis=0)
    errs = np.full(max(0, min(max_lag, len(vr) - 1) + 1), np.nan)
    for k in range(len(errs)):
        sq = (vr[: len(vr) - k] - vf[k:]) ** 2
        ok = np.isfinite(sq).all(axis=-1)
        if ok.any():
            errs[k] = sq[ok].mean()
    return float(np.nanargmin(errs)) if np.isfinite(errs).any() else float("nan")


def mean_deviation_px(a_px: np.ndarray, b_px: np.ndarray) -> float:
    """Mean distance between matching points of two (T, K, 2) tracks over the points finite in
    both; NaN when there are none."""
    d = np.linalg.norm(a_px - b_px, axis=-1)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")
