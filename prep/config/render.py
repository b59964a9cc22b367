"""Schemas of albedo extraction and photometric refinement."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omegaconf import MISSING

from prep.config.backends import Backend, backend


class AlbedoOutside(StrEnum):
    """What the albedo image holds outside the face region: the frame, or black."""

    keep = "keep"
    black = "black"


class PhotoParam(StrEnum):
    """A per-frame FLAME parameter the photometric refinement may change."""

    expr = "expr"
    global_pose = "global_pose"
    neck_pose = "neck_pose"
    jaw_pose = "jaw_pose"
    eyes_pose = "eyes_pose"
    eyelids = "eyelids"
    transl = "transl"


@backend("albedo", "shading")
@dataclass
class ShadingAlbedoConfig(Backend):
    """albedo=shading (no weights): divides out a grey shading estimate inside the face-parsing
    region: the fitted FLAME mesh's SH shading when flame/tracking.npz exists, else masked
    multi-scale Retinex."""

    _target_: str = "prep.stages.albedo.ShadingAlbedo"
    # Face-parsing labels (BiSeNet numbering) whose pixels get albedo; others follow `outside`.
    region: list[int] = field(default_factory=lambda: [1, 2, 3, 7, 8, 10, 11, 12, 13, 14])
    outside: AlbedoOutside = AlbedoOutside.keep
    use_mesh: bool = True  # divide out the fitted FLAME mesh's SH shading when tracked
    retinex_sigmas: list[float] = field(default_factory=lambda: [0.02, 0.06, 0.15])  # x image size
    sh_ridge: float = 0.05  # ridge weight of the per-frame SH fit (higher bands)
    min_shading: float = 0.2  # never divide by less than this x the region's mean
    batch_size: int = 8  # frames rendered together (mesh shading)


@backend("albedo", "intrinsic_anything")
@dataclass
class IntrinsicAnythingConfig(Backend):
    """albedo=intrinsic_anything: a user's IntrinsicAnything checkout (inference.py and weights
    under assets.intrinsic_anything_dir) run with HRAvatar's arguments; the frames it skips
    (`image_interval`) are filled by temporal blending."""

    _target_: str = "prep.stages.albedo.IntrinsicAnythingAlbedo"
    python: str = "python"  # interpreter of the IntrinsicAnything environment
    script: str = "${assets.intrinsic_anything_dir}/inference.py"
    model_dir: str = "${assets.intrinsic_anything_dir}/weights/albedo"
    ddim: int = 100  # diffusion steps (HRAvatar's setting)
    batch_size: int = 10
    image_interval: int = 3  # process every n-th frame; the rest are filled by interpolation
    timeout_s: float | None = None  # kill the subprocess after this long (null = no limit)


@dataclass
class AlbedoConfig:
    """Albedo extraction (stage albedo); backend group conf/albedo/. Its backends are built as
    ``cls(settings, ctx)`` (a `StageContext`) and write the frames ``run(todo)`` names."""

    backend: Backend = MISSING  # the method: albedo=shading|intrinsic_anything


@dataclass
class PhotometricWeights:
    """Loss weights of the photometric refinement (after the landmark fit)."""

    photo: float = 1.0  # masked L1 colour error inside the face-parsing skin/face region
    lmk: float = 1.0  # landmark term kept from the landmark fit (x the tracker's own weight)
    albedo_smooth: float = 1.0  # Laplacian smoothness of the per-vertex albedo
    albedo_mean: float = 0.1  # pull of the albedo towards its mean colour
    sh_reg: float = 0.01  # keeps SH bands above the ambient small
    expr_reg: float = 1e-3  # expression prior
    pose_smooth: float = 10.0  # temporal smoothness of rotations and translation (per frame^2)


@dataclass
class PhotometricConfig:
    """Photometric refinement of a FLAME fit (runs when fit_flame.photometric=true)."""

    w: PhotometricWeights = field(default_factory=PhotometricWeights)
    sizes: list[int] = field(default_factory=lambda: [128, 256])  # coarse-to-fine render sizes
    steps: list[int] = field(default_factory=lambda: [12, 6])  # optimiser steps per size
    lr: float = 5e-3  # Adam step of expression; poses x0.2 (rad), translation x0.04 (m)
    lr_albedo: float = 5e-3  # Adam learning rate of albedo and lighting
    sh_per_frame: bool = False  # one SH lighting per frame instead of one per subject
    batch_frames: int = 16  # frames per optimisation window (sliding over the sequence)
    region: list[int] = field(default_factory=lambda: [1, 2, 3, 10, 11, 12, 13])  # parsing labels
    refine: list[PhotoParam] = field(
        default_factory=lambda: [
            PhotoParam(p) for p in ("expr", "jaw_pose", "global_pose", "neck_pose", "transl")
        ]
    )  # parameters the photometric loss may change (others stay fixed)
