"""One-Euro temporal filter for landmark tracks (Casiez et al., CHI 2012).

A low-pass filter whose cutoff rises with speed: at rest it removes detector jitter, during fast
motion (a head turn) it follows with little lag. Speeds are measured in inter-ocular distances
per second, so one setting works at any crop size. The filter restarts after every invalid frame
and never fills gaps.
"""

from __future__ import annotations

import numpy as np


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray:
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt_s)


def one_euro(
    points_px: np.ndarray,
    valid: np.ndarray,
    fps: float,
    min_cutoff_hz: float = 1.0,
    beta: float = 4.0,
    d_cutoff_hz: float = 1.0,
    scale_px: np.ndarray | None = None,
) -> np.ndarray:
    """Filter point tracks forward in time.

    Args:
        points_px: (T, K, 2) points; rows of invalid frames are passed through unchanged.
        valid: (T,) bool; the filter restarts after each invalid frame.
        fps: frame rate of the sequence.
        min_cutoff_hz: cutoff frequency at rest.
        beta: cutoff increase per unit of speed (speed in `scale_px` units per second).
        d_cutoff_hz: cutoff of the speed estimate.
        scale_px: (T,) per-frame length unit (e.g. inter-ocular distance); None = 1 pixel.

    Returns:
        (T, K, 2) filtered points (float32).
    """
    if points_px.ndim != 3 or points_px.shape[-1] != 2:
        raise ValueError(f"points_px must be (T, K, 2), got {points_px.shape}")
    t_len = len(points_px)
    out = points_px.astype(np.float64).copy()
    dt = 1.0 / fps
    a_d = _alpha(d_cutoff_hz, dt)
    scale = np.ones(t_len) if scale_px is None else np.asarray(scale_px, np.float64)
    prev = None
    d_prev = None
    for t in range(t_len):
        if not valid[t] or not np.isfinite(out[t]).all():
            prev = None
            continue
        x = out[t]
        if prev is None:
            prev, d_prev = x, np.zeros_like(x)
            continue
        assert d_prev is not None  # set together with prev
        dx = (x - prev) / dt
        d_hat = a_d * dx + (1.0 - a_d) * d_prev
        speed = np.linalg.norm(d_hat, axis=-1, keepdims=True) / max(scale[t], 1e-6)
        a = _alpha(min_cutoff_hz + beta * speed, dt)
        x_hat = a * x + (1.0 - a) * prev
        out[t] = x_hat
        prev, d_prev = x_hat, d_hat
    return out.astype(np.float32)


def inter_ocular_px(points68_px: np.ndarray) -> np.ndarray:
    """(T,) distance between the two eye centres of 68-point sets (T, 68, 2)."""
    right = points68_px[:, 36:42].mean(axis=1)
    left = points68_px[:, 42:48].mean(axis=1)
    return np.linalg.norm(left - right, axis=-1)
