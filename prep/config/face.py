"""Schemas of landmarks, iris and parsing (owned by the landmarks/parsing engineer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LandmarksConfig:
    """68-point landmarks (stage landmarks); backend group conf/landmarks/."""

    backend: str = "mediapipe"  # mediapipe | dlib | fan
    # mediapipe: detect every frame (true) or track (false); null = per image for dataset.images,
    # tracking for videos
    static_image_mode: bool | None = None
    min_detection_confidence: float = 0.5  # mediapipe: face detector threshold
    min_tracking_confidence: float = 0.5  # mediapipe: below this the tracker re-detects
    dlib_upsample: int = 0  # dlib: detector upsampling when no face box is known
    chunk: int = 128  # frames per resumable chunk
    warmup: int = 8  # mediapipe video mode: frames tracked before each chunk (see the stage)
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
class ParsingConfig:
    """Face parsing and final masks (stage parsing); backend group conf/parsing/."""

    backend: str = "mesh"  # mesh | bisenet
    mask_clothes: bool = True  # remove the cloth label from the final mask, as HRAvatar does
    alpha_threshold: float = 0.5  # matte value above which a pixel is foreground for labels
    neck_length: float = 0.55  # mesh: neck ends this many face heights below the chin
    neck_half_width: float = 1.2  # mesh: neck half width, face heights (colour test does the rest)
    bisenet_size: int = 512  # bisenet: network input size (pixels, square)
    batch_size: int = 4  # bisenet: frames per forward pass
    overlay: bool = True  # write overlays/parsing (contact sheet + mp4)
