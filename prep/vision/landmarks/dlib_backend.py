"""dlib ``shape_predictor_68_face_landmarks`` as a landmark backend.

The predictor file ships in the pip package ``face-recognition-models``; it is located through
importlib's module spec (no pkg_resources import). The predictor runs inside the face box of each
frame (the detect stage's box, mapped into the crop); where no box is known, dlib's HOG detector
looks for the largest face. dlib's points are integer pixel centres (OpenCV convention). dlib has
no per-point confidence: a point's score is 1 inside a given box, else the detector's score
squashed to (0, 1).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prep.errors import MissingAssetError, MissingDependencyError
from prep.vision.landmarks import LandmarkResult

log = logging.getLogger(__name__)

PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"


def predictor_path() -> Path:
    """Path of dlib's 68-point predictor inside the face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / PREDICTOR_NAME
    if not path.exists():
        raise MissingAssetError(
            "dlib_shape_predictor_68", path, "pip install face-recognition-models"
        )
    return path


def _largest(rects, scores) -> tuple[object | None, float]:
    if len(rects) == 0:
        return None, 0.0
    areas = [r.width() * r.height() for r in rects]
    k = int(np.argmax(areas))
    return rects[k], float(scores[k])


class DlibLandmarks:
    """dlib 68-point shape predictor inside per-frame face boxes."""

    has_dense = False

    def __init__(self, settings, weights: None = None, device: str = "cpu") -> None:
        try:
            import dlib
        except ImportError as e:
            raise MissingDependencyError("dlib-bin") from e
        self._dlib = dlib
        self.settings = settings  # prep.config.face.DlibLandmarksConfig
        self._predictor = dlib.shape_predictor(str(predictor_path()))
        self._detector = dlib.get_frontal_face_detector()

    def __enter__(self) -> DlibLandmarks:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _face_rect(self, rgb: np.ndarray, box: np.ndarray | None) -> tuple[object | None, float]:
        if box is not None and np.isfinite(box).all():
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            return self._dlib.rectangle(x0, y0, x1, y1), 1.0
        rects, det_scores, _ = self._detector.run(rgb, int(self.settings.upsample), 0.0)
        rect, s = _largest(rects, det_scores)
        return rect, float(1.0 / (1.0 + np.exp(-2.0 * s)))

    def detect(
        self, frame_paths: Sequence[Path], boxes_px: np.ndarray | None = None
    ) -> LandmarkResult:
        """Landmarks of frames; `boxes_px` (T, 4) xyxy in frame pixels, NaN rows = unknown."""
        import cv2

        res = LandmarkResult.invalid(len(frame_paths), "no_face")
        for i, p in enumerate(frame_paths):
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                res.reason[i] = "unreadable_frame"
                continue
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            rect, score = self._face_rect(rgb, None if boxes_px is None else boxes_px[i])
            if rect is None:
                continue
            shape = self._predictor(rgb, rect)
            res.points_px[i] = [(shape.part(k).x, shape.part(k).y) for k in range(68)]
            res.scores[i] = score
            res.valid[i] = True
            res.reason[i] = ""
        return res
