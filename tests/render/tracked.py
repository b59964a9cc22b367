"""A tiny tracked FLAME sequence (flame/tracking.npz arrays) for renderer-side tests."""

from __future__ import annotations

import numpy as np
import torch

from prep.models.flame import FlameModel
from prep.models.flame_io import load_flame_model, load_landmark_embedding


def w2c_flame() -> np.ndarray:
    """World(FLAME: y up, z out of the face) to OpenCV camera for a frontal view: diag(1,-1,-1)."""
    return np.diag([1.0, -1.0, -1.0, 1.0])


def tiny_tracking(
    assets, T: int, H: int, W: int, yaw: float = 0.2, landmarks: bool = False
) -> tuple[FlameModel, dict]:
    """The tiny FLAME model and tracking arrays placing its head in the middle of an HxW crop."""
    emb = load_landmark_embedding(assets["flame_lmk_embedding"]) if landmarks else None
    model = FlameModel(load_flame_model(assets["flame2020"]), 5, 5, emb)
    v = model.v_template
    centre = (v.min(0).values + v.max(0).values) / 2
    extent = float((v.max(0).values - v.min(0).values).max())
    f = 0.96 * min(H, W)  # at 1.6 head extents away the head spans ~60% of the crop
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float32)
    transl = (-centre + torch.tensor([0, 0, -1.6 * extent])).numpy()
    z = np.zeros((T, 3), np.float32)
    trk = dict(
        frame_names=np.array([f"{i:06d}.png" for i in range(T)]),
        valid=np.ones(T, bool),
        lmk_rmse_px=np.ones(T, np.float32),
        shape=np.zeros(5, np.float32),
        expr=np.zeros((T, 5), np.float32),
        eyelids=np.zeros((T, 2), np.float32),
        global_pose=(z + [0, yaw, 0]).astype(np.float32),
        neck_pose=z,
        jaw_pose=z,
        eyes_pose=np.zeros((T, 6), np.float32),
        transl=(z + transl).astype(np.float32),
        w2c=np.tile(w2c_flame(), (T, 1, 1)),
        K=K,
        image_size=np.array([H, W]),
        crop_to_orig=np.tile(np.eye(3), (T, 1, 1)),
        model=np.array("flame2020"),
        n_shape=np.array(5),
        n_expr=np.array(5),
    )
    return model, trk
