"""Schemas of detection, crop and matting."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omegaconf import MISSING

from prep.config.backends import Backend, backend


class DetectModel(StrEnum):
    """MediaPipe face detector: short range (~2 m), full range (~5 m), or short then full."""

    short = "short"
    full = "full"
    auto = "auto"


class CropMode(StrEnum):
    """static: one box per clip; smooth: a per-frame box, temporally smoothed."""

    static = "static"
    smooth = "smooth"


class CropPad(StrEnum):
    """What fills the crop outside the original frame (replicate: edge streaks)."""

    constant = "constant"
    replicate = "replicate"


class RvmVariant(StrEnum):
    mobilenetv3 = "mobilenetv3"
    resnet50 = "resnet50"


class MatteRefine(StrEnum):
    """guided: edge-aware guided filter with the frame as colour guide; none: the raw matte."""

    guided = "guided"
    none = "none"


@backend("detect", "mediapipe")
@dataclass
class MediapipeDetectConfig(Backend):
    """detect=mediapipe: MediaPipe BlazeFace (ships with mediapipe)."""

    _target_: str = "prep.vision.detect_backends.MediapipeDetector"
    model: DetectModel = DetectModel.auto


@backend("detect", "dlib")
@dataclass
class DlibDetectConfig(Backend):
    """detect=dlib: dlib's HOG frontal face detector (dlib-bin)."""

    _target_: str = "prep.vision.detect_backends.DlibDetector"
    upsample: int = 1  # upsampling steps tried when a frame shows no face


@dataclass
class DetectConfig:
    """Face detection and single-subject tracking (stage detect); backend group conf/detect/."""

    backend: Backend = MISSING  # the detector: detect=mediapipe|dlib
    min_score: float = 0.5  # detections scoring below this are ignored
    max_side: int = 960  # frames larger than this are downscaled before detection (4K input)
    min_iou: float = 0.1  # a candidate continues the track when its IoU with the last box is above
    max_jump: float = 0.5  # ... or when its centre moved less than this times the last box side
    max_gap: int = 8  # gaps up to this many frames are interpolated and marked; longer: invalid
    reacquire_after: int = 25  # frames without a match before the track may restart elsewhere
    chunk: int = 128  # frames per resumable chunk


@dataclass
class CropConfig:
    """Square face crop (stage crop); transforms recorded in crop/crop.npz."""

    mode: CropMode = CropMode.static
    image_size: int = 512  # output side, pixels
    scale: float = 2.3  # crop side = scale x detected face box side (2.2-2.5 in the public tools)
    increase_area: float = 0.0  # OTAvatar-style extra margin: side *= 1 + increase_area
    shift_y: float = -0.1  # vertical shift of the centre, in face-box sides (negative = up, hair)
    static_size_quantile: float = 0.9  # static: box side = this quantile of the track's sides
    smooth_sigma: float = 5.0  # smooth: Gaussian sigma of the centre track, frames
    smooth_sigma_size: float = 15.0  # smooth: Gaussian sigma of the box side, frames
    drop_outside: bool = False  # fail (drop the clip) when the static box leaves the frame
    inside_frame: bool = False  # move (and shrink) the box so it never leaves the frame
    pad: CropPad = CropPad.constant  # fill outside the original frame
    pad_value: int = 0  # constant padding grey level, 0-255; mattes and masks are 0 there
    matting_first: bool = False  # matte the full frame, then crop the alpha (OTAvatar order)
    jpeg_quality: int = 95  # crop/frames JPEG quality
    workers: int = 2  # threads decoding, warping and encoding frames


@backend("matting", "selfie")
@dataclass
class SelfieMattingConfig(Backend):
    """matting=selfie: MediaPipe selfie segmentation (ships with mediapipe)."""

    _target_: str = "prep.vision.matting.SelfieMatter"
    model: int = 0  # 0: general (256x256), 1: landscape (144x256)


@backend("matting", "rvm")
@dataclass
class RvmMattingConfig(Backend):
    """matting=rvm: Robust Video Matting (weights assets.rvm_<variant>)."""

    _target_: str = "prep.vision.matting.RvmMatter"
    variant: RvmVariant = RvmVariant.mobilenetv3
    downsample_ratio: float | None = None  # null = auto (network input side ~512)

    def assets(self) -> list[str]:
        return [f"rvm_{self.variant}"]


@backend("matting", "modnet")
@dataclass
class ModnetMattingConfig(Backend):
    """matting=modnet: MODNet webcam portrait matting (weights assets.modnet)."""

    _target_: str = "prep.vision.matting.ModnetMatter"
    ref_size: int = 512  # input short side

    def assets(self) -> list[str]:
        return ["modnet"]


@dataclass
class MattingConfig:
    """Soft alpha matting (stage matting); backend group conf/matting/."""

    backend: Backend = MISSING  # the network: matting=selfie|rvm|modnet
    refine: MatteRefine = MatteRefine.guided
    guided_radius: int = 8  # guided filter radius, pixels at 512
    guided_eps: float = 1e-3  # guided filter regulariser (intensities in [0,1])
    guided_subsample: int = 4  # guided filter coefficients solved at 1/this resolution
    temporal: float = 0.3  # weight of the previous frame's alpha (0 = no temporal smoothing)
    clip_low: float = 0.02  # alpha below this becomes 0 (removes haze)
    clip_high: float = 0.98  # alpha above this becomes 1
    warmup: int = 8  # frames re-run before a resumed chunk to re-warm recurrent/temporal state
    chunk: int = 64  # frames per resumable chunk
