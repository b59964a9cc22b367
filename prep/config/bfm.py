"""Schemas of the BFM model, 3DMM trackers and LMDB packing (owned by the BFM engineer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BfmConfig:
    """Which BFM variant to load."""

    variant: str = "front"  # front (Deep3DFaceRecon) | adnerf


@dataclass
class Fit3dmmConfig:
    """3DMM coarse and fine trackers (stages fit_3dmm_coarse, fit_3dmm_fine)."""

    coarse_backend: str = "landmarks"  # landmarks | deep3dface


@dataclass
class LmdbConfig:
    """PIRenderer/OTAvatar LMDB packing (stage pack_lmdb)."""

    size: int = 256  # JPEG side, 256 or 512
