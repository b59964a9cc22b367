"""Loss terms of the trackers: robust point terms, priors, temporal smoothness.

Every term is a mean, so weights keep their meaning across sequence lengths: point terms average
over weighted points of valid frames, priors over coefficients, smoothness over frame pairs.
"""

from __future__ import annotations

import torch


def robust(r2: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Penalty of squared residual norms ``r2``.

    Args:
        r2: squared residual norms (any shape).
        kind: ``charbonnier`` (``sqrt(r2 + eps^2) - eps``: L1-like far away, smooth at 0; with a
            small eps it is IMAvatar's Euclidean landmark distance) or ``l2`` (``r2``).
        eps: charbonnier's radius, in the units of the residual.
    """
    if kind == "charbonnier":
        return torch.sqrt(r2 + eps * eps) - eps
    if kind == "l2":
        return r2
    raise ValueError(f"unknown loss {kind!r} (charbonnier | l2)")


def point_loss(
    pred: torch.Tensor,
    obs: torch.Tensor,
    w: torch.Tensor,
    scale: torch.Tensor,
    kind: str,
    eps: float,
) -> torch.Tensor:
    """Weighted mean robust distance between 2D point sets.

    Args:
        pred, obs: (T, N, 2) pixels.
        w: (T, N) weights (0 = ignore).
        scale: (2,) pixels per normalised unit (half the crop size).
        kind, eps: see `robust`; eps in normalised units.

    Returns:
        Scalar: ``sum(w * rho) / sum(w > 0)`` (0 when no point has weight).
    """
    if pred.shape[1] == 0:
        return pred.new_zeros(())
    r = (pred - obs) / scale
    d = robust((r * r).sum(-1), kind, eps)
    n = (w > 0).sum().clamp(min=1)
    return (w * d).sum() / n


def mean_sq(x: torch.Tensor) -> torch.Tensor:
    """Mean square of all elements (0 for an empty tensor)."""
    return (x * x).mean() if x.numel() else x.new_zeros(())


def smooth_sq(x: torch.Tensor) -> torch.Tensor:
    """Mean squared frame-to-frame change of ``x (T, D)`` (0 for T < 2 or shared values)."""
    if x.shape[0] < 2 or x.numel() == 0:
        return x.new_zeros(())
    d = x[1:] - x[:-1]
    return (d * d).mean()
