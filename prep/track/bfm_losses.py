"""Loss terms of the BFM fine tracker (plain functions, unit-tested on their own)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def landmark_loss(
    xy_px: torch.Tensor, target_px: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Confidence-weighted mean squared landmark error, pixels^2.

    Args:
        xy_px: (B, K, 2) projected landmarks.
        target_px: (B, K, 2) detected landmarks.
        weight: (B, K) confidences (0 for missing points or frames).
    """
    sq = (xy_px - target_px).pow(2).sum(-1)
    return (sq * weight).sum() / weight.sum().clamp(min=1e-6)


def laplacian_loss(x: torch.Tensor) -> torch.Tensor:
    """Temporal smoothness: mean squared second difference ``x[t-1] - 2 x[t] + x[t+1]``.

    Args:
        x: (T, D) per-frame parameters in frame order (T < 3 gives zero).
    """
    if x.shape[0] < 3:
        return x.sum() * 0.0
    return (x[:-2] - 2 * x[1:-1] + x[2:]).pow(2).mean()


def photometric_loss(
    colour: torch.Tensor, observed: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """Mean RGB distance between shaded model colours and the image at the projected vertices.

    Args:
        colour: (B, K, 3) model colours in [0, 1].
        observed: (B, K, 3) image colours sampled at the projections, [0, 1].
        visible: (B, K) float weights (1 for front-facing vertices inside the image).
    """
    dist = (colour - observed).pow(2).sum(-1).add(1e-8).sqrt()
    return (dist * visible).sum() / visible.sum().clamp(min=1.0)


def sample_image(images: torch.Tensor, xy_px: torch.Tensor) -> torch.Tensor:
    """Bilinear colours of (B, 3, H, W) images at (B, K, 2) pixel positions -> (B, K, 3).

    Pixel centres sit at integer coordinates (align_corners=True maps 0 and W-1 to -1 and 1).
    """
    h, w = images.shape[-2:]
    grid = torch.stack([xy_px[..., 0] / (w - 1), xy_px[..., 1] / (h - 1)], -1) * 2 - 1
    out = F.grid_sample(images, grid[:, :, None], mode="bilinear", align_corners=True)
    return out[..., 0].transpose(1, 2)


def inside_image(xy_px: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, K) bool: projections inside the image."""
    x, y = xy_px[..., 0], xy_px[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
