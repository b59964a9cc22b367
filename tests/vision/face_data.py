"""Shared real-data helpers for the face tests: MediaPipe and dlib on the shared photos."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from prep.config.backends import SCHEMAS
from prep.config.face import LandmarksConfig

PHOTOS = ("p02_frontal_smile_ffhq00018.png", "p08_expr_surprise_hires_exp4.jpg")


@lru_cache(maxsize=4)
def photo_results(photo_dir: str, backend: str):
    """LandmarkResult of the frontal shared photos for `backend` (computed once per session)."""
    from prep.vision.landmarks import make_backend

    settings = SCHEMAS[("landmarks", backend)]().for_input(sequence=False)  # photos: static
    cfg = LandmarksConfig(backend=settings)
    paths = [Path(photo_dir) / p for p in PHOTOS]
    with make_backend(cfg) as be:
        return be.detect(paths)


def frontal_mesh(photo_dir: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """(478, 3) MediaPipe mesh of the frontal photo and the photo's (h, w)."""
    import cv2

    res = photo_results(str(photo_dir), "mediapipe")
    img = cv2.imread(str(Path(photo_dir) / PHOTOS[0]))
    return res.dense_px[0].copy(), img.shape[:2]
