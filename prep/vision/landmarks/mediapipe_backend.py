"""MediaPipe face mesh (refine_landmarks=True, 478 points) as a landmark backend.

MediaPipe graphs must not live in a process that later forks, so the graph is built inside one
spawned worker process and frames are sent there by path; the parent only receives arrays.
Pixel convention: MediaPipe's normalised x in [0, 1] spans the image's outer edges, so
``x_px = x * w - 0.5`` puts pixel centres at integer coordinates (OpenCV convention). z uses the
same pixel scale as x (``z * w``), smaller is nearer the camera.

Each `detect` call starts from a fresh tracker: the graph is reset before its first frame, so the
result of a call depends only on its frames. In video mode the mesh follows the face from frame
to frame (the next region of interest comes from the last landmarks), so a sequence processed in
several calls differs from one processed in one call; the landmarks stage therefore always calls
it per chunk, each chunk preceded by the same warm-up frames, which makes a resumed run exact.

MediaPipe gives no per-point confidence. Scores are 1 except on the jaw contour of the side
turned away from the camera, where the silhouette point slides over the cheek: there the score
falls linearly from 1 at 20 degrees of yaw to 0.2 at 70 degrees (yaw from the 3D mesh).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from prep.vision.landmarks import N_DENSE, LandmarkResult
from prep.vision.landmarks.mapping import mp478_to_68

log = logging.getLogger(__name__)

_MESH: Any = None  # the worker's FaceMesh graph (mediapipe, untyped)
_MESH_SAW_FACE = False  # the graph's first face makes it log a note on square ROIs


def _init_worker(static: bool, min_det: float, min_track: float) -> None:
    from prep.vision.mp_graph import NATIVE_QUIET_ENV

    for key, value in NATIVE_QUIET_ENV.items():  # spawned workers may not have them yet
        os.environ.setdefault(key, value)
    import mediapipe as mp

    from prep.vision.mp_graph import open_graph

    global _MESH, _MESH_SAW_FACE
    _MESH_SAW_FACE = False
    _MESH = open_graph(
        lambda: mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_det,
            min_tracking_confidence=min_track,
        )
    )


def _process(rgb: np.ndarray):
    """`_MESH.process`, with the native note its first face triggers sent to the log."""
    global _MESH_SAW_FACE
    if _MESH_SAW_FACE:
        return _MESH.process(rgb)
    from prep.vision.mp_graph import native_stderr_to_log

    with native_stderr_to_log():
        res = _MESH.process(rgb)
    _MESH_SAW_FACE = bool(res.multi_face_landmarks)
    return res


def _run_paths(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Worker: dense points (n, 478, 3), found (n,) and readable (n,) for image files.

    The graph is reset first (a reset graph gives the same bytes as a new one, measured on c01),
    so nothing tracked in an earlier call carries into this one.
    """
    import cv2

    from prep.vision.mp_graph import native_stderr_to_log

    global _MESH_SAW_FACE
    with native_stderr_to_log():  # a restarted graph repeats its start-up notes on first use
        _MESH.reset()
        _MESH.process(np.zeros((64, 64, 3), np.uint8))  # no face: leaves no tracked state
    _MESH_SAW_FACE = False  # ... and its first-face note
    n = len(paths)
    dense = np.full((n, N_DENSE, 3), np.nan, np.float32)
    found = np.zeros(n, bool)
    readable = np.ones(n, bool)
    for i, p in enumerate(paths):
        bgr = cv2.imread(p, cv2.IMREAD_COLOR)
        if bgr is None:
            readable[i] = False
            continue
        h, w = bgr.shape[:2]
        res = _process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if not res.multi_face_landmarks:
            continue
        lm = res.multi_face_landmarks[0].landmark
        xyz = np.array([(q.x, q.y, q.z) for q in lm], np.float32)
        dense[i, :, 0] = xyz[:, 0] * w - 0.5
        dense[i, :, 1] = xyz[:, 1] * h - 0.5
        dense[i, :, 2] = xyz[:, 2] * w
        found[i] = True
    return dense, found, readable


def yaw_deg(dense_px: np.ndarray) -> np.ndarray:
    """Approximate head yaw from the mesh's cheek points 234 (right) and 454 (left).

    Args:
        dense_px: (T, 478, 3) points.

    Returns:
        (T,) degrees; positive when the subject's right cheek is farther from the camera.
    """
    d = dense_px[:, 454] - dense_px[:, 234]
    return np.degrees(np.arctan2(-d[:, 2], d[:, 0]))


def contour_scores(dense_px: np.ndarray) -> np.ndarray:
    """Per-point scores (T, 68): lowered on the jaw contour of the side turned away."""
    yaw = yaw_deg(dense_px)
    t = len(yaw)
    scores = np.ones((t, 68), np.float32)
    far = np.clip(1.0 - (np.abs(yaw) - 20.0) / 50.0 * 0.8, 0.2, 1.0).astype(np.float32)
    right_away = yaw > 0
    scores[right_away, 0:8] = far[right_away, None]
    scores[~right_away, 9:17] = far[~right_away, None]
    return np.where(np.isfinite(yaw)[:, None], scores, 0.0).astype(np.float32)


class MediapipeLandmarks:
    """MediaPipe face mesh in a spawned worker; 68 points + dense 478 points per frame."""

    has_dense = True

    def __init__(self, settings, weights: None = None, device: str = "cpu") -> None:
        self.settings = settings  # prep.config.face.MediapipeLandmarksConfig
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> MediapipeLandmarks:
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(
                bool(self.settings.static_image_mode),
                float(self.settings.min_detection_confidence),
                float(self.settings.min_tracking_confidence),
            ),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def detect(
        self, frame_paths: Sequence[Path], boxes_px: np.ndarray | None = None
    ) -> LandmarkResult:
        """Landmarks of consecutive frames, from a fresh tracker (boxes are not needed: the mesh
        finds the face)."""
        if self._pool is None:
            raise RuntimeError("use MediapipeLandmarks as a context manager")
        dense, found, readable = self._pool.submit(
            _run_paths, [str(p) for p in frame_paths]
        ).result()
        reason = np.where(found, "", np.where(readable, "no_face", "unreadable_frame"))
        scores = contour_scores(dense)
        pts = mp478_to_68(dense)[..., :2].astype(np.float32)
        scores[~found] = 0.0
        return LandmarkResult(pts, scores, found, reason.astype("<U32"), dense)
