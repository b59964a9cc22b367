"""One call from posed world-space meshes to shaded images: transform, rasterise, shade.

Camera convention: OpenCV (x right, y down, z forward); `w2c` maps world (FLAME space after
translation) to camera; `K` is in pixels of the rendered image, pixel centres at integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prep.render.raster import Fragments, rasterize, world_to_camera
from prep.render.shading import default_sh, shade_fragments, vertex_normals
from prep.render.silhouette import soft_silhouette


@dataclass
class MeshRender:
    """Result of `render_mesh`.

    Attributes:
        rgb: (B,H,W,3) shaded colour, zero outside `mask`.
        mask: (B,H,W) bool hard coverage.
        frags: the rasteriser's fragments (triangle ids, barycentrics, depth).
        normals_cam: (B,V,3) camera-space unit vertex normals.
        silhouette: (B,H,W) soft coverage in [0,1] when requested, else None.
    """

    rgb: Tensor
    mask: Tensor
    frags: Fragments
    normals_cam: Tensor
    silhouette: Tensor | None = None


def render_mesh(
    verts_world: Tensor,
    faces: Tensor,
    w2c: Tensor,
    K: Tensor,
    image_size: tuple[int, int],
    albedo: Tensor | None = None,
    sh: Tensor | None = None,
    soft: bool = False,
    sigma_px: float = 1.0,
) -> MeshRender:
    """Render a batch of meshes with Lambertian SH shading.

    Args:
        verts_world: (B,V,3) vertices in world space.
        faces: (F,3) vertex indices, counter-clockwise seen from outside.
        w2c: (4,4) or (B,4,4) world-to-camera.
        K: (3,3) or (B,3,3) intrinsics in pixels of the rendered image.
        image_size: (H, W).
        albedo: (V,3) / (B,V,3) per-vertex albedo in [0,1]; default light grey clay.
        sh: (9,3) or (B,9,3) SH lighting in camera space; default `default_sh()`.
        soft: also compute the differentiable soft silhouette.
        sigma_px: soft silhouette edge width in pixels.

    Returns:
        MeshRender.
    """
    verts_cam = world_to_camera(verts_world, w2c)
    faces = faces.to(verts_cam.device).long()
    frags = rasterize(verts_cam, faces, K, image_size)
    normals = vertex_normals(torch.nan_to_num(verts_cam), faces)
    if albedo is None:
        albedo = torch.full(
            (verts_world.shape[1], 3), 0.8, dtype=verts_cam.dtype, device=verts_cam.device
        )
    if sh is None:
        sh = default_sh().to(verts_cam)
    rgb = shade_fragments(frags, faces, normals, albedo.to(verts_cam), sh.to(verts_cam))
    sil = soft_silhouette(verts_cam, faces, K, image_size, sigma_px=sigma_px) if soft else None
    return MeshRender(rgb=rgb, mask=frags.mask, frags=frags, normals_cam=normals, silhouette=sil)
