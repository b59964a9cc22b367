"""Per-frame quality metrics of a fit, in crop pixels (NaN where a frame has no observation)."""

from __future__ import annotations

import numpy as np


def landmark_rmse_px(pred_px: np.ndarray, obs_px: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Root mean square point error per frame.

    Args:
        pred_px, obs_px: (T, N, 2). w: (T, N) weights; points with w <= 0 are ignored.

    Returns:
        (T,) float32, NaN for frames without a weighted point.
    """
    m = w > 0
    sq = ((pred_px - obs_px) ** 2).sum(-1)
    n = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(np.where(m, sq, 0).sum(1) / n)
    return np.where(n > 0, out, np.nan).astype(np.float32)


def mean_point_error_px(pred_px: np.ndarray, obs_px: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean Euclidean point error per frame ``(T,)`` (NaN without weighted points)."""
    m = w > 0
    d = np.linalg.norm(pred_px - obs_px, axis=-1)
    n = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(m, d, 0).sum(1) / n
    return np.where(n > 0, out, np.nan).astype(np.float32)


def lmk_accel_px(points_px: np.ndarray) -> np.ndarray:
    """Landmark acceleration: mean norm of the second difference of each point, per frame ``(T,)``.

    A constant-velocity track has zero; the first and last frames are NaN.
    """
    T = len(points_px)
    out = np.full(T, np.nan, np.float32)
    if T >= 3:
        acc = points_px[2:] - 2 * points_px[1:-1] + points_px[:-2]
        out[1:-1] = np.linalg.norm(acc, axis=-1).mean(-1)
    return out


def nanmean(x: np.ndarray) -> float:
    """Mean over finite values; NaN when there are none (no warning)."""
    x = np.asarray(x, np.float64)
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else float("nan")
