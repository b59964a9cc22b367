"""Schemas of landmarks, iris and parsing (owned by the landmarks/parsing engineer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LandmarksConfig:
    """68-point landmarks (stage landmarks); backend group conf/landmarks/."""

    backend: str = "mediapipe"  # mediapipe | dlib | fan


@dataclass
class IrisConfig:
    """Iris centres (stage iris)."""


@dataclass
class ParsingConfig:
    """Face parsing and final masks (stage parsing); backend group conf/parsing/."""

    backend: str = "mesh"  # mesh | bisenet
    mask_clothes: bool = True  # remove the cloth label from the final mask, as HRAvatar does
