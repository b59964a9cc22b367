"""Shared pieces of the conformance tests: the fit's own projection, image reads as the consumers
do them, and the check that an exported image is the crop moved with its camera."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from prep.io.files import load_npz
from prep.models.flame import contour_bins
from prep.models.flame_tracking import landmarks_px

TOL_PX = 0.5  # the bound on what a format may add to the fit's own error


@dataclass
class Fit:
    """The fit as fit_flame left it, and its own landmark projection (crop pixels)."""

    track: dict
    lmk_px: np.ndarray  # (T,70,2)
    bins: np.ndarray  # (T,) contour yaw bins the fit used
    model: object  # FlameModel (float64, with the 70-point embedding)
    data: object  # FlameModelData: the model arrays the consumers' FLAME code reads
    emb: object  # LandmarkEmbedding


def fit_of(real) -> Fit:
    from prep.models.flame_io import load_flame_model, load_landmark_embedding

    track = load_npz(real.subject.flame_tracking)
    model = real.flame(int(track["n_shape"]), int(track["n_expr"]))
    lmk = landmarks_px(model, track)
    pose = {k: torch.as_tensor(track[k], dtype=torch.float64) for k in ("global_pose", "neck_pose")}
    bins = contour_bins(pose["global_pose"], pose["neck_pose"]).numpy()
    data = load_flame_model(real.assets["flame2020"])
    emb = load_landmark_embedding(real.assets["flame_lmk_embedding_eyes"])
    return Fit(track, lmk, bins, model, data, emb)


def crop_to_export(K_crop: np.ndarray, K_consumer: np.ndarray) -> np.ndarray:
    """(3,3) map from crop pixels to the consumer's image pixels: both cameras share the rays."""
    return np.asarray(K_consumer, np.float64) @ np.linalg.inv(np.asarray(K_crop, np.float64))


def apply(D: np.ndarray, px: np.ndarray) -> np.ndarray:
    return px @ D[:2, :2].T + D[:2, 2]


def pil_rgba(path) -> np.ndarray:
    """``np.array(Image.open(path).convert("RGBA"))`` as GaussianAvatars reads its images."""
    return np.array(Image.open(path).convert("RGBA"))


def image_matches_crop(
    exported_rgb: np.ndarray, crop_rgb: np.ndarray, D: np.ndarray, alpha: np.ndarray | None = None
) -> float:
    """Mean |difference| (grey levels) between an exported image warped back to the crop and the
    crop frame, over the central half of the crop (where the face is) and the foreground."""
    h, w = crop_rgb.shape[:2]
    back = cv2.warpAffine(exported_rgb, np.linalg.inv(D)[:2], (w, h), flags=cv2.INTER_LINEAR)
    sl = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
    diff = np.abs(back.astype(np.float64) - crop_rgb.astype(np.float64))[sl].mean(-1)
    if alpha is not None:
        a = cv2.warpAffine(alpha, np.linalg.inv(D)[:2], (w, h))[sl]
        diff = diff[a > 250]
    return float(diff.mean())


def splat_project(points: np.ndarray, w2c: np.ndarray, fovx: float, fovy: float, w: int, h: int):
    """Where a 3D Gaussian rasteriser draws world points: getWorld2View2(R, T) with
    ``R = w2c[:3, :3].T, T = w2c[:3, 3]`` (COLMAP axes), getProjectionMatrix(znear 0.01, zfar 100,
    fovX, fovY) (a symmetric frustum), then ndc2Pix ``((v + 1) S - 1) / 2``."""
    view = np.eye(4)
    view[:3, :3], view[:3, 3] = np.asarray(w2c)[:3, :3], np.asarray(w2c)[:3, 3]
    znear, zfar = 0.01, 100.0
    top, right = math.tan(fovy / 2) * znear, math.tan(fovx / 2) * znear
    P = np.zeros((4, 4))
    P[0, 0], P[1, 1] = 2 * znear / (2 * right), 2 * znear / (2 * top)
    P[3, 2], P[2, 2], P[2, 3] = 1.0, zfar / (zfar - znear), -(zfar * znear) / (zfar - znear)
    clip = np.concatenate([points, np.ones_like(points[..., :1])], -1) @ (P @ view).T
    ndc = clip[..., :2] / clip[..., 3:4]
    return np.stack([((ndc[..., 0] + 1) * w - 1) / 2, ((ndc[..., 1] + 1) * h - 1) / 2], -1)
