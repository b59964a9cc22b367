"""The landmarks stage's outputs, read by the stages after it (iris, parsing).

landmarks/landmarks.npz holds the 68 points (keys in `prep.stages.landmarks`); the dense
MediaPipe mesh (T, 478, 3) that iris and mesh parsing need is in it as ``dense_px`` when the
landmarks backend is MediaPipe, else in landmarks/dense.npz (``dense_px``, ``valid``), which the
landmarks stage writes by running MediaPipe once more.
"""

from __future__ import annotations

import numpy as np

from prep.errors import MissingInputError
from prep.io.files import load_npz
from prep.subject import SubjectDir


def load_landmarks(subject: SubjectDir) -> dict[str, np.ndarray]:
    """landmarks/landmarks.npz (raises MissingInputError naming stage landmarks when absent)."""
    if not subject.landmarks_npz.exists():
        raise MissingInputError("landmarks", subject.landmarks_npz)
    return load_npz(subject.landmarks_npz)


def load_dense_mesh(subject: SubjectDir) -> tuple[np.ndarray, np.ndarray]:
    """(T, 478, 3) MediaPipe mesh and (T,) validity of every face frame.

    Raises:
        MissingInputError: the landmarks stage has not written it (run stage=landmarks).
    """
    lm = load_landmarks(subject)
    if "dense_px" in lm:
        return lm["dense_px"], lm["valid"].astype(bool)
    if not subject.dense_npz.exists():
        raise MissingInputError("landmarks", subject.dense_npz, "no dense MediaPipe mesh")
    d = load_npz(subject.dense_npz)
    return d["dense_px"], d["valid"].astype(bool)
