"""Normals, Lambertian shading under 9x3 spherical-harmonics lighting, and texture sampling.

Camera convention: OpenCV (x right, y down, z forward). Lighting lives in CAMERA space, so with a
static camera one set of coefficients describes the room's light whatever the head does; pass
camera-space normals.

SH convention: real spherical harmonics up to band 2, already convolved with the clamped-cosine
(Lambertian) kernel (Ramamoorthi & Hanrahan 2001: band factors pi, 2pi/3, pi/4), and scaled so the
first basis function is exactly 1. Coefficients (9,3) are therefore irradiance per RGB channel:
``sh = [[1,1,1], 0, ...]`` is unit ambient light and shading = albedo * irradiance.
Basis order: 1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2 (the order DECA and Deep3DFaceRecon use).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from prep.render.raster import Fragments, interpolate, interpolate_corners

# Band factor * normalisation of each basis function, divided by that of the constant term.
_C0 = math.pi * 0.5 * math.sqrt(1 / math.pi)
SH_FACTORS = (
    torch.tensor(
        [
            math.pi * 0.5 * math.sqrt(1 / math.pi),
            2 * math.pi / 3 * 0.5 * math.sqrt(3 / math.pi),
            2 * math.pi / 3 * 0.5 * math.sqrt(3 / math.pi),
            2 * math.pi / 3 * 0.5 * math.sqrt(3 / math.pi),
            math.pi / 4 * 0.5 * math.sqrt(15 / math.pi),
            math.pi / 4 * 0.5 * math.sqrt(15 / math.pi),
            math.pi / 4 * 0.25 * math.sqrt(5 / math.pi),
            math.pi / 4 * 0.5 * math.sqrt(15 / math.pi),
            math.pi / 4 * 0.25 * math.sqrt(15 / math.pi),
        ]
    )
    / _C0
)


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (outward for counter-clockwise faces).

    Args:
        verts: (B,V,3) vertices.
        faces: (F,3) vertex indices.

    Returns:
        (B,V,3) unit normals; vertices touching no non-degenerate face get (0,0,0)-safe normals.
    """
    faces = faces.to(verts.device).long()
    tri = verts[:, faces]  # (B,F,3,3)
    n_face = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    n = torch.zeros_like(verts)
    for k in range(3):  # three corners, not a loop over faces
        n = n.index_add(1, faces[:, k], n_face)
    return F.normalize(n, dim=-1, eps=1e-12)


def sh_basis(normals: Tensor) -> Tensor:
    """(...,3) unit normals -> (...,9) Lambertian-convolved SH basis (first entry is 1)."""
    x, y, z = normals.unbind(-1)
    ones = torch.ones_like(x)
    basis = torch.stack([ones, y, z, x, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y], dim=-1)
    return basis * SH_FACTORS.to(normals)


def sh_irradiance(normals: Tensor, sh: Tensor) -> Tensor:
    """Irradiance for normals (B,...,3) under SH lighting (B,9,3) or (9,3) -> (B,...,3)."""
    basis = sh_basis(normals)
    if sh.ndim == 2:
        return basis @ sh
    shape = basis.shape
    flat = basis.reshape(shape[0], -1, 9)
    return (flat @ sh).reshape(*shape[:-1], 3)


def fit_sh(normals: Tensor, colour: Tensor, albedo: Tensor | float = 1.0, ridge: float = 1e-3):
    """Least-squares SH lighting explaining `colour` = albedo * irradiance(normals).

    Args:
        normals: (N,3) unit normals of sampled surface points.
        colour: (N,3) observed colours (linear-ish, in [0,1]).
        albedo: (N,3) or scalar albedo at those points.
        ridge: Tikhonov weight keeping higher bands small when normals cover little of the sphere.

    Returns:
        (9,3) SH coefficients.
    """
    A = sh_basis(normals)  # (N,9)
    target = colour / torch.as_tensor(albedo, dtype=colour.dtype).clamp(min=1e-4)
    AtA = A.T @ A + ridge * len(A) * torch.eye(9, dtype=A.dtype, device=A.device)
    AtA[0, 0] -= ridge * len(A)  # do not shrink the ambient term
    return torch.linalg.solve(AtA, A.T @ target)


def default_sh(intensity: float = 0.75, to_light=(-0.3, -0.5, -0.8)) -> Tensor:
    """A key+ambient light (9,3) for clay renders: from beside the camera, upper left.

    Irradiance is ``1 - intensity/2 + intensity/2 * dot(n, to_light)``: 1 facing the light.
    """
    d = F.normalize(torch.tensor(to_light, dtype=torch.float32), dim=0)
    sh = torch.zeros(9, 3)
    sh[0] = 1.0 - intensity * 0.5
    sh[1:4] = (d[[1, 2, 0]] * intensity * 0.5 / SH_FACTORS[1])[:, None]
    return sh


def shade_fragments(
    frags: Fragments,
    faces: Tensor,
    normals: Tensor,
    albedo: Tensor,
    sh: Tensor,
) -> Tensor:
    """Per-pixel Lambertian colour: interpolated albedo times SH irradiance of interpolated normals.

    Args:
        frags: rasterisation result (B,H,W).
        faces: (F,3).
        normals: (B,V,3) camera-space vertex normals.
        albedo: (V,3) or (B,V,3) per-vertex albedo, or a (B,H,W,3) albedo image already sampled.
        sh: (9,3) or (B,9,3) lighting.

    Returns:
        (B,H,W,3) colour, zero outside the mask.
    """
    n_pix = F.normalize(interpolate(normals, faces, frags), dim=-1, eps=1e-12)
    alb = albedo if albedo.ndim == 4 else interpolate(albedo, faces, frags)
    return alb * sh_irradiance(n_pix, sh) * frags.mask[..., None]


def sample_texture(texture: Tensor, uv_corners: Tensor, frags: Fragments) -> Tensor:
    """Bilinear texture lookup.

    Args:
        texture: (C,Ht,Wt) or (B,C,Ht,Wt) texture map; row 0 is the top (v = 1), as in OBJ files.
        uv_corners: (F,3,2) UV coordinates in [0,1] per face corner.
        frags: rasterisation result.

    Returns:
        (B,H,W,C), zero outside the mask; differentiable w.r.t. the texture and vertex positions.
    """
    B, H, W = frags.mask.shape
    uv = interpolate_corners(uv_corners.to(frags.bary), frags)  # (B,H,W,2)
    grid = torch.stack([uv[..., 0] * 2 - 1, (1 - uv[..., 1]) * 2 - 1], dim=-1)
    tex = texture.expand(B, *texture.shape[-3:]) if texture.ndim == 3 else texture
    out = F.grid_sample(
        tex.to(grid), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.permute(0, 2, 3, 1) * frags.mask[..., None]
