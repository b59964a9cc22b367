"""Albedo backends: `shading` (no weights: mesh SH shading or multi-scale Retinex) and
`intrinsic_anything` (a user's IntrinsicAnything install, run as a subprocess)."""

from prep.vision.albedo.decompose import (
    AlbedoFrame,
    divide_shading,
    face_region,
    mesh_shading,
    retinex_shading,
)

__all__ = ["AlbedoFrame", "divide_shading", "face_region", "mesh_shading", "retinex_shading"]
