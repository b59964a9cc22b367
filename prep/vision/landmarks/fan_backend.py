"""face-alignment (FAN, 2DFAN4) as a landmark backend.

The networks are licence-gated downloads that this project never fetches: the user places the
checkpoints in ``assets.fan_dir`` ($TORCH_HOME/hub/checkpoints), where face-alignment's own cache
lookup finds them; when they are absent this backend raises MissingAssetError before
face-alignment could try to download. It runs inside the given face boxes (no face detector is
used when every frame has a box) and reports FAN's heatmap peak values as point scores.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prep.errors import MissingAssetError, MissingDependencyError
from prep.vision.landmarks import LandmarkResult

log = logging.getLogger(__name__)

FAN_URL = "https://github.com/1adrianb/face-alignment (2DFAN4 and s3fd checkpoints)"


def fan_checkpoints(fan_dir: Path, model: str = "2DFAN4") -> list[Path]:
    """Checkpoint files for `model` in `fan_dir`; raises MissingAssetError when there are none."""
    found = sorted(fan_dir.glob(f"{model}*")) if fan_dir.is_dir() else []
    if not found:
        raise MissingAssetError(
            "fan_dir",
            fan_dir / f"{model}-*.zip",
            FAN_URL,
            "assets.fan_dir",
            reason=f"no {model} checkpoint",
        )
    return found


class FanLandmarks:
    """face-alignment's 2D FAN on CPU or GPU, fed with known face boxes."""

    has_dense = False

    def __init__(self, cfg, fan_dir: Path | None = None, device: str = "cpu") -> None:
        self.cfg = cfg
        self.fan_dir = Path(fan_dir) if fan_dir is not None else None
        self.device = device
        self._fa = None

    def __enter__(self) -> FanLandmarks:
        try:
            import face_alignment
        except ImportError as e:
            raise MissingDependencyError("face-alignment", extra="fan") from e
        if self.fan_dir is None:
            raise MissingAssetError("fan_dir", "<unset>", FAN_URL, "assets.fan_dir")
        fan_checkpoints(self.fan_dir, self.cfg.fan_model)
        fan_checkpoints(self.fan_dir, "s3fd")  # FaceAlignment always builds its face detector
        # face-alignment resolves its cache from TORCH_HOME; point it at the user's folder.
        os.environ["TORCH_HOME"] = str(self.fan_dir.parent.parent)
        kwargs = {"device": self.device, "flip_input": False}
        params = inspect.signature(face_alignment.FaceAlignment).parameters
        if "compile" in params:
            kwargs["compile"] = False  # torch.compile is slow to start and unsupported on CPU
        types = face_alignment.LandmarksType
        lm_type = types.TWO_D if hasattr(types, "TWO_D") else types._2D
        self._fa = face_alignment.FaceAlignment(lm_type, **kwargs)
        return self

    def __exit__(self, *exc: object) -> None:
        self._fa = None

    def detect(
        self, frame_paths: Sequence[Path], boxes_px: np.ndarray | None = None
    ) -> LandmarkResult:
        """Landmarks of frames; `boxes_px` (T, 4) xyxy face boxes (NaN rows: FAN's detector)."""
        import cv2

        if self._fa is None:
            raise RuntimeError("use FanLandmarks as a context manager")
        res = LandmarkResult.invalid(len(frame_paths), "no_face")
        for i, p in enumerate(frame_paths):
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                res.reason[i] = "unreadable_frame"
                continue
            box = None if boxes_px is None else boxes_px[i]
            faces = (
                [np.asarray(box, np.float32)]
                if box is not None and np.isfinite(box).all()
                else None
            )
            out = self._fa.get_landmarks_from_image(
                bgr[:, :, ::-1], detected_faces=faces, return_landmark_score=True
            )
            pts, scores = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
            if not pts:
                continue
            res.points_px[i] = np.asarray(pts[0])[:, :2]
            res.scores[i] = np.clip(np.asarray(scores[0]), 0, 1) if scores else 1.0
            res.valid[i] = True
            res.reason[i] = ""
        return res
