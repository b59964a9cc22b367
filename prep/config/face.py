"""Schemas of landmarks, iris and parsing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING

from prep.config.backends import Backend, backend


@dataclass
class LandmarksBackend(Backend):
    """Settings of a landmarks backend, built as ``cls(settings, weights, device)`` (weights: the
    path of the asset ``assets()`` names, or None) and used as `prep.vision.landmarks`'s
    `LandmarkBackend`."""

    needs_boxes: ClassVar[bool] = True  # finds the face in the detect stage's boxes

    def for_input(self, sequence: bool) -> LandmarksBackend:
        """These settings for a video or image sequence (`sequence`), or a photo collection."""
        return self

    def warmup_frames(self) -> int:
        """Frames run before each chunk (and dropped) so that state carried from frame to frame
        is the same in a resumed run."""
        return 0


@backend("landmarks", "mediapipe")
@dataclass
class MediapipeLandmarksConfig(LandmarksBackend):
    """landmarks=mediapipe: MediaPipe face mesh (refined, 478 points) mapped to iBUG 68; it finds
    the face itself and, in video mode, tracks it from frame to frame."""

    needs_boxes: ClassVar[bool] = False
    _target_: str = "prep.vision.landmarks.mediapipe_backend.MediapipeLandmarks"
    # detect every frame (true) or track (false); null = per image for a photo collection or
    # dataset.images, tracking for videos
    static_image_mode: bool | None = None
    min_detection_confidence: float = 0.5  # face detector threshold
    min_tracking_confidence: float = 0.5  # below this the tracker re-detects
    warmup: int = 8  # video mode: frames tracked before each chunk (see the landmarks stage)

    def for_input(self, sequence: bool) -> MediapipeLandmarksConfig:
        mode = self.static_image_mode
        static = bool(mode) if sequence else (True if mode is None else mode)
        return dataclasses.replace(self, static_image_mode=static)

    def warmup_frames(self) -> int:
        return 0 if self.static_image_mode else self.warmup


@backend("landmarks", "dlib")
@dataclass
class DlibLandmarksConfig(LandmarksBackend):
    """landmarks=dlib: dlib's shape_predictor_68 (from face-recognition-models) in the face box."""

    _target_: str = "prep.vision.landmarks.dlib_backend.DlibLandmarks"
    upsample: int = 0  # detector upsampling when no face box is known


@backend("landmarks", "fan")
@dataclass
class FanLandmarksConfig(LandmarksBackend):
    """landmarks=fan: face-alignment's 2DFAN4 behind its S3FD detector (files in assets.fan_dir)."""

    _target_: str = "prep.vision.landmarks.fan_backend.FanLandmarks"

    def assets(self) -> list[str]:
        return ["fan_dir"]


@dataclass
class LandmarksConfig:
    """68-point landmarks (stage landmarks); backend group conf/landmarks/."""

    backend: LandmarksBackend = MISSING  # the detector: landmarks=mediapipe|dlib|fan
    chunk: int = 128  # frames per resumable chunk
    max_gap: int = 5  # bridge interior gaps up to this many frames by interpolation (0 = off)
    smooth: bool = True  # One-Euro temporal filter on the 68 points (off: raw detections)
    min_cutoff_hz: float = 1.0  # One-Euro cutoff at rest (lower = smoother, more lag)
    beta: float = 4.0  # One-Euro speed gain, per inter-ocular distance per second
    d_cutoff_hz: float = 1.0  # One-Euro cutoff of the speed estimate
    overlay: bool = True  # write overlays/landmarks (contact sheet + mp4)


@dataclass
class IrisConfig:
    """Iris centres (stage iris) from MediaPipe's refined points 468-477."""

    ear_closed: float = 0.12  # eye aspect ratio below this = closed eye (iris invalid)
    min_eye_width_ratio: float = 0.45  # eye narrower than this x the other eye = turned away
    overlay: bool = True  # write overlays/iris (contact sheet + mp4)


@dataclass
class ParsingBackend(Backend):
    """Settings of a parsing backend, built as ``cls(settings, ctx)`` (a `StageContext`)."""


@backend("parsing", "mesh")
@dataclass
class MeshParsingConfig(ParsingBackend):
    """parsing=mesh: regions rasterised from the MediaPipe mesh, plus neck, hair and cloth from
    the matte (no weights)."""

    _target_: str = "prep.stages.parsing.MeshLabeller"
    neck_length: float = 0.55  # neck ends this many face heights below the chin
    neck_half_width: float = 1.2  # neck half width, face heights (colour test does the rest)


@backend("parsing", "bisenet")
@dataclass
class BisenetParsingConfig(ParsingBackend):
    """parsing=bisenet: face-parsing.PyTorch's BiSeNet (weights assets.bisenet)."""

    _target_: str = "prep.stages.parsing.BisenetLabeller"
    size: int = 512  # network input size (pixels, square)

    def assets(self) -> list[str]:
        return ["bisenet"]


@dataclass
class ParsingConfig:
    """Face parsing and final masks (stage parsing); backend group conf/parsing/."""

    backend: ParsingBackend = MISSING  # the labeller: parsing=mesh|bisenet
    mask_clothes: bool = True  # remove the cloth label from the final mask, as HRAvatar does
    alpha_threshold: float = 0.5  # matte value above which a pixel is foreground for labels
    batch_size: int = 4  # frames labelled together (bisenet: per forward pass)
    overlay: bool = True  # write overlays/parsing (contact sheet + mp4)
