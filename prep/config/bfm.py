"""Schemas of the BFM model, 3DMM trackers and LMDB packing."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omegaconf import MISSING

from prep.config.backends import Backend, backend


class BfmVariant(StrEnum):
    """front: Deep3DFaceRecon's BFM (id 80, exp 64, tex 80); adnerf: AD-NeRF's (100/79/100)."""

    front = "front"
    adnerf = "adnerf"


class FocalMode(StrEnum):
    """search: grid of candidates (AD-NeRF); optimise: joint with the fit; fixed: the given one."""

    search = "search"
    optimise = "optimise"
    fixed = "fixed"


class LmdbSplit(StrEnum):
    """Which list files name the video (PIRender/OTAvatar train from train_list.txt and run
    inference from test_list.txt)."""

    train = "train"
    test = "test"
    both = "both"


@dataclass
class BfmConfig:
    """Which BFM variant to load (assets bfm_front / bfm_adnerf)."""

    variant: BfmVariant = BfmVariant.front
    build_front: bool = True  # front missing: build it from bfm_2009 + bfm_exp_pca (+ index files)


@backend("fit_3dmm_coarse", "landmarks")
@dataclass
class LandmarksCoarseConfig(Backend):
    """fit_3dmm_coarse=landmarks (no weights): each frame's identity, expression and pose fitted
    to its 68 landmarks by Adam, rigid first; texture and light stay zero."""

    _target_: str = "prep.stages.fit_3dmm_coarse.LandmarksCoarseFit"
    iters_rigid: int = 80  # Adam steps on pose only
    iters: int = 200  # Adam steps on pose + identity + expression
    lr: float = 0.05  # Adam learning rate (coefficients are unit-variance)
    w_id: float = 1e-3  # prior on identity coefficients (per coefficient, squared)
    w_exp: float = 1e-3  # prior on expression coefficients
    batch: int = 512  # frames optimised together (vectorised)


@backend("fit_3dmm_coarse", "deep3dface")
@dataclass
class Deep3dfaceCoarseConfig(Backend):
    """fit_3dmm_coarse=deep3dface: the published Deep3DFaceRecon ResNet-50 regressor
    (assets.deep3dface, aligned with assets.bfm_lm3d)."""

    _target_: str = "prep.stages.fit_3dmm_coarse.Deep3dfaceCoarseFit"

    def assets(self) -> list[str]:
        return ["deep3dface", "bfm_lm3d"]


@dataclass
class CoarseConfig:
    """Per-frame coarse 3DMM fit (stage fit_3dmm_coarse), Deep3DFaceRecon conventions; backend
    group conf/fit_3dmm_coarse/, built as ``cls(settings, ctx)`` (a `StageContext`).

    `min_score` also picks the frames fit_3dmm_fine fits: it refines this stage's fit.
    """

    backend: Backend = MISSING  # the fit: fit_3dmm_coarse=landmarks|deep3dface
    focal: float = 1015.0  # focal of the 224x224 aligned image, pixels (Deep3DFaceRecon default)
    camera_distance: float = 10.0  # camera centre on +z at this distance (BFM units)
    target_size: int = 224  # side of the aligned image, pixels
    rescale_factor: float = 102.0  # Deep3DFaceRecon align_img: scale = rescale_factor / POS scale
    min_score: float = 0.3  # landmark score below this counts as a missing frame


@dataclass
class FineWeights:
    """Loss weights of the fine (per-video) tracker."""

    lmk: float = 1.0  # landmark L2, pixels^2 at the crop resolution
    photo: float = 1.0  # photometric L2 on sampled vertex colours (RGB in [0,1])
    smooth_rigid: float = 1e3  # temporal Laplacian on euler and trans (AD-NeRF uses 1e5 on pixels)
    smooth_exp: float = 1.0  # temporal Laplacian on expression
    reg_id: float = 1e-3  # prior on identity coefficients
    reg_exp: float = 1e-3  # prior on expression coefficients
    reg_tex: float = 1e-3  # prior on texture coefficients


@dataclass
class FineConfig:
    """Per-video 3DMM fit (stage fit_3dmm_fine, Lightning): shared identity, texture and focal,
    per-frame pose, expression and light, from fit_3dmm_coarse's fit and its frames."""

    focal_mode: FocalMode = FocalMode.search
    focal: float = 1100.0  # fixed focal, pixels of the crop image (OTAvatar: 1100 at 512)
    focal_search: list[float] = field(
        default_factory=lambda: [600.0, 700.0, 800.0, 900.0, 1000.0, 1100.0, 1200.0, 1300.0, 1400.0]
    )  # candidate focals, pixels of the crop image (AD-NeRF grid)
    focal_search_frames: int = 64  # frames used by the focal search
    size: int = 256  # fine fit resolution: crop frames resized to this side, pixels
    iters_focal: int = 150  # Adam steps per focal candidate
    iters_lmk: int = 300  # landmark phase steps over all frames
    photo_epochs: int = 1  # photometric passes over all frames (0 = landmark phase only)
    photo_batch: int = 16  # frames per photometric step
    # photometric steps on per-frame pose/expression, x lr (0 = keep them from the landmark phase
    # and refine texture + per-frame light only; > 0 moved poses off their landmarks in the bench)
    photo_frame_lr_scale: float = 0.0
    lr: float = 0.02  # Adam learning rate
    n_photo_vertices: int = 2000  # vertices sampled for the photometric term
    w: FineWeights = field(default_factory=FineWeights)
    overlay: bool = True  # write overlays/fit_3dmm_fine/fit.mp4 (landmarks drawn on frames)
    overlay_size: int = 256  # overlay video side, pixels


@dataclass
class LmdbConfig:
    """PIRenderer/OTAvatar LMDB packing (stage pack_lmdb)."""

    # JPEG sides packed, one database each (<lmdb>/<size>/): PIRender reads 256 (opt.resolution),
    # OTAvatar opens <path>/512 (config/otavatar.yaml resolution 512)
    sizes: list[int] = field(default_factory=lambda: [256, 512])
    jpeg_quality: int = 95  # 1-100
    video_name: str | None = None  # key prefix of this subject's video (null = subject name)
    split: LmdbSplit = LmdbSplit.both
    map_size_gb: float = 8.0  # LMDB map size; the write fails cleanly when it is too small
