"""Schemas of albedo and photometric refinement (owned by the renderer engineer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AlbedoConfig:
    """Albedo extraction (stage albedo); backend group conf/albedo/."""

    backend: str = "shading"  # shading | intrinsic_anything
