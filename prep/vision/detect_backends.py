"""Face detector backends: MediaPipe face detection (default) and dlib HOG.

Every backend returns all faces of one RGB frame as `FaceCandidates` in ORIGINAL pixels.
Pixel convention: pixel centres at integer coordinates, pixel (0, 0) covers [-0.5, 0.5]^2, so a box
covering the whole W x H image is (-0.5, -0.5, W - 0.5, H - 0.5). Boxes are (x0, y0, x1, y1) edges.

MediaPipe graphs are created when a backend is opened (`with make_detector(cfg) as det:`), i.e.
inside the process that uses them, and closed on exit; never create one in a parent that forks.
Each backend is built as ``cls(settings, cfg)``: its own settings (``detect.backend``, e.g.
`prep.config.perception.MediapipeDetectConfig`) and the stage's (`DetectConfig`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from prep.config.backends import instantiate
from prep.config.perception import DetectConfig, DlibDetectConfig, MediapipeDetectConfig
from prep.errors import BadConfigError, MissingDependencyError
from prep.io.files import image_hw

log = logging.getLogger(__name__)

N_KPS = 6  # MediaPipe keypoints: right eye, left eye, nose tip, mouth, right ear, left ear


@dataclass
class FaceCandidates:
    """All faces found in one frame.

    Attributes:
        box_xyxy: (n, 4) float32 boxes, original pixels (edges, see module docstring).
        score: (n,) float32 detector confidence.
        kps_px: (n, 6, 2) float32 keypoints, original pixels (nan when the backend has none).
    """

    box_xyxy: np.ndarray
    score: np.ndarray
    kps_px: np.ndarray

    @staticmethod
    def empty() -> FaceCandidates:
        return FaceCandidates(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, N_KPS, 2), np.float32),
        )

    def __len__(self) -> int:
        return len(self.score)


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Resize so the longer side is at most `max_side`; returns (image, factor new/old)."""
    h, w = rgb.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f >= 1.0:
        return rgb, 1.0
    small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return small, f


def _to_orig(xy: np.ndarray, f: float) -> np.ndarray:
    """Map pixel coordinates of an image resized by `f` back to the original (centre convention)."""
    return (xy + 0.5) / f - 0.5


class MediapipeDetector:
    """MediaPipe BlazeFace: short range (faces within ~2 m), full range (~5 m) or auto."""

    def __init__(self, settings: MediapipeDetectConfig, cfg: DetectConfig):
        self.settings, self.cfg = settings, cfg
        self._graphs: dict[int, Any] = {}  # mediapipe FaceDetection graphs (untyped)

    def __enter__(self) -> MediapipeDetector:
        from mediapipe.python.solutions import face_detection

        from prep.vision.mp_graph import open_graph

        ids = {"short": [0], "full": [1], "auto": [0, 1]}[self.settings.model]
        for i in ids:
            self._graphs[i] = open_graph(
                functools.partial(
                    face_detection.FaceDetection,
                    model_selection=i,
                    min_detection_confidence=self.cfg.min_score,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for g in self._graphs.values():
            g.close()
        self._graphs.clear()

    def detect(self, rgb: np.ndarray) -> FaceCandidates:
        """All faces in an RGB uint8 (H, W, 3) frame."""
        small, f = _downscale(rgb, self.cfg.max_side)
        small = np.ascontiguousarray(small)
        for model_id, graph in self._graphs.items():
            found = _parse_mediapipe(graph.process(small).detections, image_hw(small))
            if len(found) or model_id == max(self._graphs):
                break
        found.box_xyxy = _to_orig(found.box_xyxy.reshape(-1, 2, 2), f).reshape(-1, 4)
        found.kps_px = _to_orig(found.kps_px, f)
        return found


def _parse_mediapipe(detections: list | None, hw: tuple[int, int]) -> FaceCandidates:
    if not detections:
        return FaceCandidates.empty()
    h, w = hw
    boxes, scores, kps = [], [], []
    for d in detections:
        rb = d.location_data.relative_bounding_box
        # Normalised 0 is the image edge, which is -0.5 in pixel-centre coordinates.
        x0, y0 = rb.xmin * w - 0.5, rb.ymin * h - 0.5
        boxes.append([x0, y0, x0 + rb.width * w, y0 + rb.height * h])
        scores.append(d.score[0] if d.score else 0.0)
        pts = [[p.x * w - 0.5, p.y * h - 0.5] for p in d.location_data.relative_keypoints]
        pts = (pts + [[np.nan, np.nan]] * N_KPS)[:N_KPS]
        kps.append(pts)
    return FaceCandidates(
        np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(kps, np.float32)
    )


class DlibDetector:
    """dlib's HOG frontal face detector (dlib-bin), boxes rescaled to MediaPipe-like extent."""

    # Measured on the two shared clips (median over 900 frames), MediaPipe's box side is 1.00-1.10x
    # dlib's and its centre 0.03 side lower; this maps dlib boxes onto the MediaPipe extent so
    # crop.scale means the same for both backends.
    SCALE = 1.05
    SHIFT_Y = 0.03

    def __init__(self, settings: DlibDetectConfig, cfg: DetectConfig):
        self.settings, self.cfg = settings, cfg
        self._det: Any = None  # dlib's detector (untyped), built in __enter__

    def __enter__(self) -> DlibDetector:
        try:
            import dlib
        except ImportError as e:
            raise MissingDependencyError("dlib-bin") from e
        self._det = dlib.get_frontal_face_detector()
        return self

    def __exit__(self, *exc: object) -> None:
        self._det = None

    def detect(self, rgb: np.ndarray) -> FaceCandidates:
        small, f = _downscale(rgb, self.cfg.max_side)
        small = np.ascontiguousarray(small)
        # Upsampling finds small faces at 4x the cost: only when the plain pass finds nothing.
        for up in range(self.settings.upsample + 1):
            rects, scores, _ = self._det.run(small, up, -0.5)
            if rects:
                break
        if not rects:
            return FaceCandidates.empty()
        # dlib rectangles are inclusive integer pixel bounds: edges at l - 0.5 and r + 0.5.
        b = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32)
        b[:, :2] -= 0.5
        b[:, 2:] += 0.5
        side = b[:, 2:] - b[:, :2]
        centre = (b[:, :2] + b[:, 2:]) / 2 + np.stack(
            [0 * side[:, 0], self.SHIFT_Y * side[:, 1]], 1
        )
        half = side * self.SCALE / 2
        b = np.concatenate([centre - half, centre + half], 1)
        # HOG margins are unbounded; squash to (0, 1) like a detector confidence.
        s = 1.0 / (1.0 + np.exp(-np.asarray(scores, np.float32)))
        keep = s >= self.cfg.min_score
        out = FaceCandidates(
            b[keep],
            s[keep].astype(np.float32),
            np.full((int(keep.sum()), N_KPS, 2), np.nan, np.float32),
        )
        out.box_xyxy = _to_orig(out.box_xyxy.reshape(-1, 2, 2), f).reshape(-1, 4)
        return out


def make_detector(cfg: DetectConfig) -> MediapipeDetector | DlibDetector:
    """The configured backend, to be opened with ``with``."""
    if not 0 <= cfg.min_score <= 1 or cfg.max_side < 64 or cfg.max_gap < 0 or cfg.chunk < 1:
        raise BadConfigError(
            f"detect.min_score={cfg.min_score} (0..1), detect.max_side={cfg.max_side} (>= 64), "
            f"detect.max_gap={cfg.max_gap} (>= 0), detect.chunk={cfg.chunk} (>= 1): out of range"
        )
    return instantiate(cfg.backend, cfg)
