"""Our differentiable renderer: rasteriser, soft silhouette, SH shading, texture sampling.

Pure torch, vectorised over triangles, pixels and frames; runs unchanged on CPU and CUDA.
Camera convention: OpenCV (x right, y down, z forward), K in pixels, pixel centres at integers.
"""

from prep.render.mesh import MeshRender, render_mesh
from prep.render.raster import (
    Fragments,
    camera_to_pixels,
    interpolate,
    interpolate_corners,
    interpolate_sparse,
    rasterize,
    world_to_camera,
)
from prep.render.shading import (
    default_sh,
    fit_sh,
    sample_texture,
    sh_basis,
    sh_irradiance,
    shade_fragments,
    vertex_normals,
)
from prep.render.silhouette import soft_silhouette

__all__ = [
    "Fragments",
    "MeshRender",
    "camera_to_pixels",
    "default_sh",
    "fit_sh",
    "interpolate",
    "interpolate_corners",
    "interpolate_sparse",
    "rasterize",
    "render_mesh",
    "sample_texture",
    "sh_basis",
    "sh_irradiance",
    "shade_fragments",
    "soft_silhouette",
    "vertex_normals",
    "world_to_camera",
]
