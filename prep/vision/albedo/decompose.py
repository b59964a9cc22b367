"""Intrinsic decomposition without learned weights: image = albedo x shading, inside a face mask.

Two shading estimates, both grey (one value per pixel), so dividing them out removes light falloff
and shadows but keeps the skin's colour:

- `mesh_shading` (when a FLAME fit exists): the fitted mesh's camera-space normals are rendered,
  a 9-coefficient SH irradiance is fitted by least squares to the frame's luminance inside the
  region (constant albedo assumed for the fit), and the irradiance is the shading.
- `retinex_shading` (no fit): multi-scale Retinex (Jobson et al. 1997) restricted to the mask: the
  shading is the geometric mean of masked, normalised Gaussian blurs of the luminance at a few
  scales (fractions of the image size), so it follows low-frequency light, not texture.

`divide_shading` then computes ``albedo = image / (shading / mean(shading))`` inside the region.
Images are handled in linear RGB (sRGB decoded) and re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from prep.render.shading import fit_sh, sh_irradiance

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass
class AlbedoFrame:
    """One frame's decomposition.

    Attributes:
        albedo: (H,W,3) uint8 sRGB albedo (outside the region as requested by the caller).
        shading: (H,W) float32 relative shading (1 = the region's mean), 1 outside the region.
    """

    albedo: np.ndarray
    shading: np.ndarray


def srgb_to_linear(rgb_u8: np.ndarray) -> np.ndarray:
    x = rgb_u8.astype(np.float32) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    y = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(y * 255).astype(np.uint8)


def face_region(labels: np.ndarray, mask_u8: np.ndarray | None, region: list[int]) -> np.ndarray:
    """(H,W) bool: parsing labels in `region`, and foreground in the final mask when given."""
    m = np.isin(labels, np.asarray(region))
    if mask_u8 is not None:
        m &= mask_u8 > 127
    return m


def _masked_blur(x: np.ndarray, m: np.ndarray, sigma_px: float) -> np.ndarray:
    """Normalised convolution: Gaussian blur of `x` using only pixels where `m` is set."""
    mf = m.astype(np.float32)
    num = cv2.GaussianBlur(x * mf, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(mf, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    return num / np.maximum(den, 1e-6)


def retinex_shading(lin_rgb: np.ndarray, region: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """Grey shading (H,W) from multi-scale masked blurs of log luminance; 1 outside `region`.

    Args:
        lin_rgb: (H,W,3) linear RGB in [0,1].
        region: (H,W) bool pixels to decompose.
        sigmas: blur scales as fractions of the larger image side.
    """
    if not region.any():
        return np.ones(region.shape, np.float32)
    lum = np.maximum(lin_rgb @ LUMA, 1e-4)
    log_l = np.log(lum).astype(np.float32)
    size = max(region.shape)
    logs = [_masked_blur(log_l, region, max(s * size, 0.5)) for s in sigmas]
    shading = np.exp(np.mean(logs, axis=0))
    return np.where(region, shading, 1.0).astype(np.float32)


def mesh_shading(
    lin_rgb: np.ndarray,
    region: np.ndarray,
    normals_cam: np.ndarray,
    covered: np.ndarray,
    ridge: float = 0.05,
    sigmas: tuple[float, ...] = (0.02, 0.06, 0.15),
    feather: float = 0.02,
) -> np.ndarray:
    """Grey shading (H,W) = SH irradiance of the rendered mesh normals, fitted to the luminance.

    Where the mesh does not cover the region (hair line, neck, a misfit outline) and near the
    mesh's outline (grazing normals, where a small misfit changes the irradiance most), the mesh
    shading is blended into the Retinex estimate, scaled to agree with it on the covered pixels,
    so no seam appears.

    Args:
        lin_rgb: (H,W,3) linear RGB.
        region: (H,W) bool pixels to decompose.
        normals_cam: (H,W,3) camera-space unit normals of the rendered fitted mesh.
        covered: (H,W) bool pixels the mesh covers.
        ridge: ridge weight of the higher SH bands (relative to the pixel count).
        sigmas: Retinex scales (fractions of the image size) for the uncovered pixels.
        feather: width of the blend at the mesh outline, fraction of the image size.

    Returns:
        (H,W) float32 shading, 1 outside the region.
    """
    use = region & covered
    retinex = retinex_shading(lin_rgb, region, list(sigmas))
    if use.sum() < 50:
        return retinex
    lum = lin_rgb @ LUMA
    n = torch.from_numpy(normals_cam[use].astype(np.float64))
    y = torch.from_numpy(lum[use].astype(np.float64))[:, None].expand(-1, 3)
    sh = fit_sh(n, y, albedo=1.0, ridge=ridge)[:, :1]
    irr = np.ones(region.shape, np.float32)
    irr[use] = np.maximum(sh_irradiance(n, sh.expand(9, 3))[:, 0].numpy(), 1e-4)
    scale = float(np.mean(irr[use]) / max(np.mean(retinex[use]), 1e-6))
    size = max(region.shape)
    w = cv2.GaussianBlur(use.astype(np.float32), (0, 0), max(feather * size, 0.5)) * use
    w = np.clip(2 * w - 1, 0, 1)  # 0 at the outline, 1 a feather width inside it
    shading = w * irr + (1 - w) * retinex * scale
    return np.where(region, np.maximum(shading, 1e-4), 1.0).astype(np.float32)


def divide_shading(
    rgb_u8: np.ndarray,
    region: np.ndarray,
    shading: np.ndarray,
    outside: str = "keep",
    min_shading: float = 0.2,
) -> AlbedoFrame:
    """albedo = image / relative shading inside `region`.

    Args:
        rgb_u8: (H,W,3) sRGB frame.
        region: (H,W) bool.
        shading: (H,W) grey shading (any scale).
        outside: "keep" (original pixels) or "black".
        min_shading: relative shading is clamped below at this value (deep shadows, noise).
    """
    lin = srgb_to_linear(rgb_u8)
    if region.any():
        rel = shading / float(np.mean(shading[region]))
        rel = np.where(region, np.maximum(rel, min_shading), 1.0).astype(np.float32)
    else:
        rel = np.ones(region.shape, np.float32)
    alb = linear_to_srgb(lin / rel[..., None])
    if outside == "black":
        alb[~region] = 0
    else:
        alb[~region] = rgb_u8[~region]
    return AlbedoFrame(albedo=alb, shading=rel)


def lowfreq_std(rgb_u8: np.ndarray, region: np.ndarray, sigma_frac: float = 0.05) -> float:
    """Std of the low-frequency log luminance inside `region` (how much shading is left)."""
    if region.sum() < 10:
        return float("nan")
    log_l = np.log(np.maximum(srgb_to_linear(rgb_u8) @ LUMA, 1e-4)).astype(np.float32)
    blur = _masked_blur(log_l, region, sigma_frac * max(region.shape))
    return float(np.std(blur[region]))
