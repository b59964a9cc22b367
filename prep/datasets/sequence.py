"""Sequence or photo collection: do a subject's frames follow each other in time?

A video is a sequence: consecutive frames show the same scene a moment apart, so the pipeline
tracks the face, smooths landmarks over time, bridges short gaps and fits one identity with
temporal smoothness. A folder of unrelated photos is not: each image gets its own crop and its
own detection, no temporal filter or bridging, no temporal smoothness in the FLAME fit, and its
own FLAME identity unless ``dataset.same_person=true``.

``dataset.sequence`` declares it; left null, videos are sequences and an image folder is judged
by the detect stage from how alike consecutive images are: the normalised cross-correlation of
32 x 32 grey thumbnails. Measured: consecutive video frames 0.99-1.00 (c01, c03, carphone), frames
2 s apart 0.93-0.98 (every 50th frame of c01/c03), unrelated portraits -0.13 to 0.51 (median 0.16
over the 16-photo check set). A folder is a sequence when the median over its consecutive pairs
reaches `SIMILAR_NCC`; one image is a collection of one. The decision is stored in
detect/detections.npz (``sequence``, ``pair_ncc``) and read back with `is_sequence`.
"""

from __future__ import annotations

import cv2
import numpy as np

from prep.config import Config
from prep.config.core import DatasetConfig
from prep.io.files import load_npz
from prep.subject import SubjectDir

SIMILAR_NCC = 0.8  # median consecutive-pair similarity from which an image folder is a sequence
THUMB_SIDE = 32


def declared_sequence(ds: DatasetConfig) -> bool | None:
    """True/False when known without looking at the frames (declared, or not an image folder)."""
    if ds.sequence is not None:
        return bool(ds.sequence)
    return None if ds.images else True


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """(1024,) zero-mean unit-norm grey 32 x 32 thumbnail of an RGB uint8 image."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    t = cv2.resize(grey, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).ravel()
    t = t.astype(np.float64) - t.mean()
    return (t / max(float(np.linalg.norm(t)), 1e-9)).astype(np.float32)


def pair_similarity(thumbs: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """(n,) correlation of each thumbnail with the one before (NaN for the first without `prev`).

    Args:
        thumbs: (n, 1024) thumbnails of consecutive frames.
        prev: (1024,) thumbnail of the frame before the first, or None.
    """
    before = np.concatenate([[np.zeros_like(thumbs[0]) if prev is None else prev], thumbs[:-1]])
    out = (thumbs * before).sum(axis=1)
    if prev is None:
        out[0] = np.nan
    return out.astype(np.float32)


def judge(cfg: Config, pair_ncc: np.ndarray) -> tuple[bool, str]:
    """(sequence?, the one line saying how that was decided) for the frames' pair similarities."""
    declared = declared_sequence(cfg.dataset)
    if declared is not None:
        how = "declared (dataset.sequence)" if cfg.dataset.sequence is not None else "a video"
        return declared, f"frames are {'a sequence' if declared else 'a photo collection'}: {how}"
    sim = pair_ncc[np.isfinite(pair_ncc)]
    n = len(pair_ncc)
    if n == 1:
        return False, "a single image: processed as a photo (its own crop, no temporal filters)"
    if len(sim) and np.median(sim) >= SIMILAR_NCC:
        return True, (
            f"the {n} images look like a sequence (median similarity of consecutive images "
            f"{np.median(sim):.2f}): tracked as a video; set dataset.sequence=false if they are not"
        )
    alike = int((sim >= SIMILAR_NCC).sum())
    return False, (
        f"the {n} images are not a sequence ({alike} of {len(sim)} consecutive pairs alike): "
        "processed as a photo collection (per-image crop, no temporal filters, one FLAME identity "
        "per image unless dataset.same_person=true); set dataset.sequence=true if they are one"
    )


def is_sequence(cfg: Config, subject: SubjectDir) -> bool:
    """Whether `subject`'s frames are a sequence: declared, else the detect stage's decision."""
    declared = declared_sequence(cfg.dataset)
    if declared is not None:
        return declared
    if subject.detections.exists():
        det = load_npz(subject.detections)
        if "sequence" in det:
            return bool(det["sequence"])
    return True
