"""Edge-aware and temporal refinement of a soft matte.

`guided_filter` is He et al.'s colour guided filter computed on a subsampled grid (the "fast
guided filter"): the local linear coefficients are solved at 1/s resolution and applied to the
full-resolution guide, so a blocky low-resolution segmentation snaps to the image's edges (hair,
ears) at a fraction of the full-resolution cost. `MattePostprocess` adds motion-adaptive temporal
smoothing and a soft clip of near-0 / near-1 values.
"""

from __future__ import annotations

import cv2
import numpy as np

from prep.errors import BadConfigError


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(
        x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT
    )


def _solve3_sym(m: dict[str, np.ndarray], v: list[np.ndarray]) -> list[np.ndarray]:
    """Solve symmetric 3x3 systems per pixel by cofactors; m holds the 6 unique entries."""
    a, b, c, d, e, f = (m[k] for k in ("00", "01", "02", "11", "12", "22"))
    A, B, C = d * f - e * e, c * e - b * f, b * e - c * d
    D, E, F = a * f - c * c, b * c - a * e, a * d - b * b
    inv_det = 1.0 / (a * A + b * B + c * C)
    x, y, z = v
    return [
        (A * x + B * y + C * z) * inv_det,
        (B * x + D * y + E * z) * inv_det,
        (C * x + E * y + F * z) * inv_det,
    ]


def guided_filter(
    guide_rgb: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 2
) -> np.ndarray:
    """Colour guided filter.

    Args:
        guide_rgb: (H, W, 3) uint8 or float guide image (uint8 is scaled to [0, 1]).
        src: (H, W) float32 input to filter (e.g. a segmentation probability).
        radius: window radius in full-resolution pixels.
        eps: regulariser; larger = smoother, smaller = follows the guide's edges more.
        subsample: solve the coefficients at 1/subsample resolution.

    Returns:
        (H, W) float32 filtered `src`.
    """
    I = guide_rgb.astype(np.float32) / (255.0 if guide_rgb.dtype == np.uint8 else 1.0)
    p = src.astype(np.float32)
    h, w = p.shape
    s = max(1, int(subsample))
    hs, ws = max(1, h // s), max(1, w // s)
    Is = cv2.resize(I, (ws, hs), interpolation=cv2.INTER_AREA) if s > 1 else I
    ps = cv2.resize(p, (ws, hs), interpolation=cv2.INTER_AREA) if s > 1 else p
    r = max(1, radius // s)
    mean_I = _box(Is, r)
    mean_p = _box(ps, r)
    cov = [_box(Is[..., i] * ps, r) - mean_I[..., i] * mean_p for i in range(3)]
    sig: dict[str, np.ndarray] = {}
    for i in range(3):
        for j in range(i, 3):
            v = _box(Is[..., i] * Is[..., j], r) - mean_I[..., i] * mean_I[..., j]
            sig[f"{i}{j}"] = v + eps if i == j else v
    a = _solve3_sym(sig, cov)
    b = mean_p - a[0] * mean_I[..., 0] - a[1] * mean_I[..., 1] - a[2] * mean_I[..., 2]
    coef = _box(cv2.merge([*a, b]), r)  # one 4-channel filter and resize instead of four
    if s > 1:
        coef = cv2.resize(coef, (w, h), interpolation=cv2.INTER_LINEAR)
    c0, c1, c2, c3 = cv2.split(coef)
    i0, i1, i2 = cv2.split(I)
    return c0 * i0 + c1 * i1 + c2 * i2 + c3


class MattePostprocess:
    """Per-frame refinement with state: guided filter, temporal smoothing, soft clip.

    Temporal smoothing blends in the previous output where the matte barely changed
    (weight ``temporal * exp(-(|a_t - a_{t-1}| / 0.1)^2)``), so static edges stop flickering
    while real motion is followed without ghosting.
    """

    def __init__(
        self,
        refine: str,
        radius: int,
        eps: float,
        temporal: float,
        lo: float,
        hi: float,
        subsample: int = 4,
    ):
        if not 0 <= temporal < 1:
            raise BadConfigError(f"matting.temporal={temporal}: use 0 (off) up to below 1")
        self.refine, self.radius, self.eps, self.subsample = refine, radius, eps, subsample
        self.temporal, self.lo, self.hi = temporal, lo, hi
        self.prev: np.ndarray | None = None

    def reset(self) -> None:
        self.prev = None

    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame and (H, W) raw alpha in [0, 1] -> refined (H, W) float32."""
        a = alpha.astype(np.float32)
        if self.refine == "guided":
            r = max(1, round(self.radius * max(a.shape) / 512))
            raw = a
            a = guided_filter(rgb, raw, r, self.eps, self.subsample)
            # Refine only the uncertain band: far inside / outside the raw matte stays 1 / 0,
            # so dark hair on a bright background does not turn translucent.
            k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
            a[cv2.erode((raw > 0.9).astype(np.uint8), k) > 0] = 1.0
            a[cv2.erode((raw < 0.1).astype(np.uint8), k) > 0] = 0.0
        a = np.clip(a, 0.0, 1.0)
        if self.temporal > 0 and self.prev is not None and self.prev.shape == a.shape:
            wgt = self.temporal * np.exp(-np.square((a - self.prev) / 0.1))
            a = (1 - wgt) * a + wgt * self.prev
        self.prev = a
        if self.hi > self.lo:
            a = np.clip((a - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        return a
