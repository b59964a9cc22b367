"""Inputs of the FLAME tracker: observed landmarks, irises, dense points and the camera.

`load_tracking_data` reads a subject's ``landmarks/landmarks.npz``, ``iris/iris.npz`` and
``crop/crop.npz`` into one `TrackingData`; `FlameDataModule` serves it to the LightningModule as
a single full-sequence batch (the tracker optimises all frames at once, vectorised).

Pixel convention: OpenCV, pixel centres at integer coordinates. Observations are in crop pixels;
the camera is described in ORIGINAL-video pixels (``fx fy cx cy``) and mapped to each frame's crop
by ``orig_to_crop (T, 3, 3)``, so a shared focal stays physical even when the crop moves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import lightning as L
import numpy as np
import torch

from prep.errors import BadConfigError, BadInputError, MissingInputError, NoUsableFramesError
from prep.geometry.crop import CropTransforms
from prep.io.files import load_npz, read_json
from prep.subject import SubjectDir
from prep.vision.landmarks.files import load_dense_mesh

log = logging.getLogger(__name__)

N_LMK = 68


@dataclass
class TrackingData:
    """Observations of one sequence (numpy on load, torch via `to_torch`).

    Attributes:
        frame_names: (T,) image names.
        lmk_px: (T, 68, 2) landmarks, crop pixels (0 where missing).
        lmk_w: (T, 68) per-point weights (confidence; 0 on invalid frames or missing points).
        valid: (T,) frame has usable landmarks.
        iris_px: (T, 2, 2) iris centres in embedding order (subject's right, then left).
        iris_w: (T, 2) per-iris weights.
        dense_px: (T, M, 2) dense MediaPipe points matched to the embedding, or (T, 0, 2).
        dense_w: (T, M) weights.
        orig_to_crop: (T, 3, 3) original pixels -> crop pixels.
        image_size: (2,) crop (h, w).
        orig_hw: (2,) original (h, w).
    """

    frame_names: np.ndarray
    lmk_px: np.ndarray
    lmk_w: np.ndarray
    valid: np.ndarray
    iris_px: np.ndarray
    iris_w: np.ndarray
    dense_px: np.ndarray
    dense_w: np.ndarray
    orig_to_crop: np.ndarray
    image_size: np.ndarray
    orig_hw: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.lmk_px)

    def to_torch(self, dtype=torch.float32, device=None) -> dict[str, torch.Tensor]:
        out = {}
        for f in fields(self):
            a = getattr(self, f.name)
            if f.name == "frame_names":
                continue
            t = torch.as_tensor(np.ascontiguousarray(a), device=device)
            out[f.name] = t.to(dtype) if t.is_floating_point() else t
        return out

    def subset(self, idx: np.ndarray) -> TrackingData:
        """Frames `idx` only (the camera fields that are not per-frame are kept)."""
        kw = {}
        for f in fields(self):
            a = getattr(self, f.name)
            kw[f.name] = a if f.name in ("image_size", "orig_hw") else a[idx]
        return TrackingData(**kw)


def _clean_points(pts: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bad = ~np.isfinite(pts).all(-1)
    w = np.where(bad, 0.0, w)
    return np.nan_to_num(pts, nan=0.0, posinf=0.0, neginf=0.0), w


def load_tracking_data(
    subject: SubjectDir, min_score: float = 0.0, mp_index: np.ndarray | None = None
) -> TrackingData:
    """Read a subject's landmarks, irises and crop transforms.

    Args:
        subject: the subject directory.
        min_score: landmark scores below this count as missing.
        mp_index: (M,) MediaPipe point indices for the dense term, or None.

    Raises:
        MissingInputError: landmarks.npz is absent.
        BadInputError: wrong point counts or inconsistent frame counts.
        NoUsableFramesError: every frame is invalid.
    """
    if not subject.landmarks_npz.exists():
        raise MissingInputError("landmarks", subject.landmarks_npz)
    lm = load_npz(subject.landmarks_npz)
    pts = np.asarray(lm["points_px"], np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (N_LMK, 2):
        raise BadInputError(
            f"{subject.landmarks_npz}: points_px has shape {pts.shape}, expected (T, 68, 2)"
        )
    T = len(pts)
    scores = np.asarray(lm.get("scores", np.ones((T, N_LMK))), np.float64)
    valid = np.asarray(lm.get("valid", np.ones(T, bool)), bool)
    if "interpolated" in lm:
        valid = valid & ~np.asarray(lm["interpolated"], bool)
    w = np.where(valid[:, None] & (scores >= max(min_score, 1e-6)), scores, 0.0)
    pts, w = _clean_points(pts, w)
    valid = valid & (w.sum(1) > 0)
    if not valid.any():
        raise NoUsableFramesError(f"{subject.landmarks_npz}: all {T} frames are invalid")
    names = np.asarray(lm.get("frame_names", [f"{i:06d}.png" for i in range(T)])).astype(str)
    iris_px, iris_w = _load_iris(subject, T)
    iris_w = iris_w * valid[:, None]
    dense_px, dense_w = _load_dense(subject, lm, mp_index, valid)
    A, image_size, orig_hw = _load_crop(subject, T, lm)
    return TrackingData(
        names, pts, w, valid, iris_px, iris_w, dense_px, dense_w, A, image_size, orig_hw
    )


def _load_iris(subject: SubjectDir, T: int) -> tuple[np.ndarray, np.ndarray]:
    if not subject.iris_npz.exists():
        return np.zeros((T, 2, 2)), np.zeros((T, 2))
    d = load_npz(subject.iris_npz)
    iris = np.asarray(d["iris_px"], np.float64)
    if iris.shape != (T, 2, 2):
        raise BadInputError(
            f"{subject.iris_npz}: iris_px has shape {iris.shape}, expected ({T}, 2, 2)"
        )
    ok = np.asarray(d.get("valid", np.ones((T, 2), bool)), bool).reshape(T, 2)
    # iris.npz stores [subject's left, right]; the FLAME eye embedding has right, then left
    iris, w = _clean_points(iris[:, [1, 0]], ok[:, [1, 0]].astype(np.float64))
    return iris, w


def _load_dense(subject, lm, mp_index, valid) -> tuple[np.ndarray, np.ndarray]:
    """The dense MediaPipe points matched to the FLAME embedding; none (a warning, the fit runs
    on the 68 + 2 points) when the subject has no dense mesh (imported landmarks)."""
    T = len(valid)
    if mp_index is None:
        return np.zeros((T, 0, 2)), np.zeros((T, 0))
    try:
        dense, ok = load_dense_mesh(subject)
    except MissingInputError:
        log.warning(
            "%s: no dense MediaPipe mesh; the FLAME fit leaves fit_flame.w.dense out",
            subject.landmarks_npz.parent,
        )
        return np.zeros((T, 0, 2)), np.zeros((T, 0))
    dense = np.asarray(dense, np.float64)
    if dense.ndim != 3 or dense.shape[:2] != (T, 478):
        raise BadInputError(
            f"{subject.landmarks_npz.parent}: dense mesh has shape {dense.shape}, not ({T}, 478, .)"
        )
    pts = dense[:, mp_index, :2]
    w = np.repeat((valid & np.asarray(ok, bool))[:, None], len(mp_index), 1)
    return _clean_points(pts, w.astype(np.float64))


def _load_crop(subject: SubjectDir, T: int, lm: dict):
    """Crop transforms from the source video's pixels, the crop's (h, w) and the source's (h, w).

    "Original pixels" are the source video's, also when the ingest cut a box out of it (HDTF's
    annotation boxes, meta/video.json `crop_xywh`): intrinsics given by users (`fx fy cx cy`) are
    in the source video's pixels (`CropTransforms.source_to_crop`).
    """
    if subject.crop_npz.exists():
        ct = CropTransforms.load(subject)
        if len(ct.orig_to_crop) != T:
            raise BadInputError(
                f"{subject.crop_npz}: {len(ct.orig_to_crop)} crop transforms for {T} frames"
            )
        image_size = np.asarray(ct.crop_hw, np.int64)
        return ct.source_to_crop, image_size, np.asarray(ct.source_hw, np.int64).reshape(2)
    hw = lm.get("image_hw")
    if hw is None and subject.video_json.exists():
        meta = read_json(subject.video_json)
        hw = (meta.get("height"), meta.get("width"))
    if hw is None or None in tuple(hw):
        raise MissingInputError("crop", subject.crop_npz, "no crop transform and no image size")
    hw = np.asarray(hw, np.int64).reshape(2)
    return np.repeat(np.eye(3)[None], T, 0), hw, hw


def camera_intrinsics_orig(
    orig_hw: np.ndarray, fx: float | None, fy: float | None, cx: float | None, cy: float | None
) -> tuple[float | None, float | None, float, float]:
    """Validated intrinsics in original pixels (fx/fy None = to estimate; c defaults to centre)."""
    for name, v in (("fx", fx), ("fy", fy)):
        if v is not None and not v > 0:
            raise BadConfigError(f"{name}={v}: focal lengths must be positive pixels")
    if (fx is None) != (fy is None):
        fx = fy = fx if fx is not None else fy
    h, w = (int(x) for x in orig_hw)
    cx = (w - 1) / 2 if cx is None else float(cx)
    cy = (h - 1) / 2 if cy is None else float(cy)
    return fx, fy, cx, cy


class FlameDataModule(L.LightningDataModule):
    """Serves the whole sequence as one batch, once per optimisation step (`steps` of them)."""

    def __init__(self, data: TrackingData, dtype=torch.float32):
        super().__init__()
        self.batch = data.to_torch(dtype)
        self.steps = 1

    def train_dataloader(self):
        data = _RepeatedBatch(self.batch, self.steps)
        return torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)


class _RepeatedBatch(torch.utils.data.Dataset):
    def __init__(self, batch: dict[str, torch.Tensor], n: int):
        self.batch, self.n = batch, max(int(n), 1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch
