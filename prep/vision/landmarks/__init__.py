"""68-point face landmarks behind one interface (mediapipe, dlib, fan backends).

Every backend returns a `LandmarkResult` in the iBUG 68-point order, in pixels of the image it was
given (the crop). Pixel convention: OpenCV, x right, y down, pixel centres at integer coordinates
(pixel (0, 0) covers [-0.5, 0.5]^2). Frames without a usable face are ``valid=False`` with a
reason and NaN points, never a stale value from another frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

N_POINTS = 68
N_DENSE = 478


@dataclass
class LandmarkResult:
    """Per-frame landmarks of a sequence of frames.

    Attributes:
        points_px: (T, 68, 2) float32 iBUG points in image pixels; NaN where invalid.
        scores: (T, 68) float32 per-point confidence in [0, 1]; 0 where invalid.
        valid: (T,) bool, a face was found.
        reason: (T,) str, why a frame is invalid ("" when valid), e.g. "no_face".
        dense_px: (T, 478, 3) float32 MediaPipe points (x, y in pixels, z in pixels of the same
            scale, smaller = nearer the camera), or None for backends without dense points.
    """

    points_px: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    dense_px: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = len(self.valid)
        if self.points_px.shape != (t, N_POINTS, 2):
            raise ValueError(f"points_px must be ({t}, 68, 2), got {self.points_px.shape}")
        if self.scores.shape != (t, N_POINTS):
            raise ValueError(f"scores must be ({t}, 68), got {self.scores.shape}")
        if self.reason.shape != (t,):
            raise ValueError(f"reason must be ({t},), got {self.reason.shape}")
        if self.dense_px is not None and self.dense_px.shape != (t, N_DENSE, 3):
            raise ValueError(f"dense_px must be ({t}, 478, 3), got {self.dense_px.shape}")

    def __len__(self) -> int:
        return len(self.valid)

    @classmethod
    def invalid(cls, n: int, reason: str, dense: bool = False) -> LandmarkResult:
        """`n` frames without a face."""
        return cls(
            points_px=np.full((n, N_POINTS, 2), np.nan, np.float32),
            scores=np.zeros((n, N_POINTS), np.float32),
            valid=np.zeros(n, bool),
            reason=np.full(n, reason, dtype="<U32"),
            dense_px=np.full((n, N_DENSE, 3), np.nan, np.float32) if dense else None,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays as stored in landmarks/landmarks.npz (dense_px only when present)."""
        out = {
            "points_px": self.points_px.astype(np.float32),
            "scores": self.scores.astype(np.float32),
            "valid": self.valid.astype(bool),
            "reason": self.reason.astype("<U32"),
        }
        if self.dense_px is not None:
            out["dense_px"] = self.dense_px.astype(np.float32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LandmarkResult:
        return cls(
            points_px=arrays["points_px"],
            scores=arrays["scores"],
            valid=arrays["valid"].astype(bool),
            reason=arrays["reason"],
            dense_px=arrays.get("dense_px"),
        )


class LandmarkBackend(Protocol):
    """A landmark detector over frame files; used as a context manager."""

    has_dense: bool

    def detect(
        self, frame_paths: Sequence[Path], boxes_px: np.ndarray | None = None
    ) -> LandmarkResult:
        """Landmarks of consecutive frames.

        Args:
            frame_paths: image files, in temporal order.
            boxes_px: (T, 4) xyxy face boxes in the frames' pixels (NaN rows = unknown), or None.
        """
        ...

    def __enter__(self) -> LandmarkBackend: ...

    def __exit__(self, *exc: object) -> None: ...


def make_backend(cfg, weights: Path | None = None, device: str = "cpu") -> LandmarkBackend:
    """The backend of ``cfg.backend`` (`prep.config.face.LandmarksBackend` settings), built as
    ``cls(settings, weights, device)``; `weights`: the path of the asset its ``assets()`` names
    (FAN's folder), None when it names none."""
    from prep.config.backends import instantiate

    return instantiate(cfg.backend, weights, device)
