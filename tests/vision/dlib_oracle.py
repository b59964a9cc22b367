"""An independent 68-point reference for landmark placement: dlib's shape predictor.

dlib's ``shape_predictor_68_face_landmarks`` (shipped by face-recognition-models) with dlib's own
HOG face detector, called directly, not through our dlib backend. Used only by tests and
benchmarks. `nme` is the AFLW2000-3D style error: mean point distance over the face size
sqrt(w h) of the reference landmarks' bounding box.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def dlib_landmarks(paths: list[Path]) -> np.ndarray:
    """(n, 68, 2) dlib landmarks of the largest face (NaN where HOG finds none; 1x upsampling)."""
    import dlib

    from prep.io.files import read_image

    with warnings.catch_warnings():  # its pkg_resources import warns on new setuptools
        warnings.simplefilter("ignore")
        import face_recognition_models
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    out = np.full((len(paths), 68, 2), np.nan)
    for k, p in enumerate(paths):
        img = read_image(p, "rgb")
        rects = det(img, 1)
        if rects:
            r = max(rects, key=lambda r: r.width() * r.height())
            s = pred(img, r)
            out[k] = [(s.part(j).x, s.part(j).y) for j in range(68)]
    return out


def nme(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n,) mean 68-point error / sqrt(w h) of the reference's box (NaN where either is NaN)."""
    size = np.sqrt(np.prod(reference.max(axis=1) - reference.min(axis=1), axis=1))
    return np.linalg.norm(points - reference, axis=-1).mean(axis=1) / size
