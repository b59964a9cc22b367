"""Schemas of the FLAME model and tracker (owned by the FLAME engineer)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FlameConfig:
    """Which FLAME model to load; group conf/flame/."""

    version: str = "flame2020"  # flame2020 | flame2023
    n_shape: int = 100
    n_expr: int = 50


@dataclass
class TrackerWeights:
    """Loss weights of the FLAME tracker."""

    lmk: float = 1.0
    smooth_pose: float = 10.0


@dataclass
class TrackerConfig:
    """FLAME tracker (stage fit_flame); group conf/tracker/."""

    w: TrackerWeights = field(default_factory=TrackerWeights)
