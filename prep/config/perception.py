"""Schemas of detection, crop and matting (owned by the detect/crop/matting engineer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DetectConfig:
    """Face detection and tracking (stage detect)."""

    backend: str = "mediapipe"  # mediapipe | dlib


@dataclass
class CropConfig:
    """Square face crop (stage crop)."""

    mode: str = "static"  # static | smooth
    image_size: int = 512  # output side, pixels


@dataclass
class MattingConfig:
    """Soft alpha matting (stage matting); backend group conf/matting/."""

    backend: str = "selfie"  # selfie | rvm | modnet
