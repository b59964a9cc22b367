"""AD-NeRF reads our export of a real clip as its loaders do and casts its rays through the
fitted BFM landmarks where the fit drew them (within 0.5 px).

The steps below are ours, written from reading YudongGuo/AD-NeRF ``NeRFs/HeadNeRF/
load_audface.py`` 28-81 (transforms_{train,val}.json, ``aud.npy`` indexed by min(aud_id, N-1),
``head_imgs/<img_id>.jpg``, int32 ``face_rect``, ``bc.jpg`` gives H and W, focal_len, cx, cy),
``NeRFs/TorsoNeRF/load_audface.py`` 33-84 (``com_imgs/<img_id>.jpg``), ``NeRFs/HeadNeRF/
run_nerf_helpers.py`` 340-357 (rays ``((i - cx) / f, -(j - cy) / f, -1)`` from pixel index i,
j, rotated by c2w), and ``data_util/process_data.py`` steps 4, 5, 7 (the NeRF world is the
tracker's divided by 10; head/composite images; face_rect from the landmarks).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from prep.export.adnerf_images import HEAD_LABELS
from prep.io.files import load_npz, read_image
from prep.models.bfm import BfmModel
from prep.models.bfm_io import load_front_mat
from tests.export.conformance import TOL_PX

pytestmark = pytest.mark.slow


def imread(path) -> np.ndarray:
    """imageio.imread of a JPEG (imageio is not installed here; PIL decodes the same file)."""
    return np.asarray(Image.open(path))


def adnerf_project(points_nerf, c2w, focal, cx, cy):
    """Pixel (i, j) whose get_rays direction passes through each point (camera looks down -z)."""
    w2c = np.linalg.inv(c2w)
    p = points_nerf @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([cx + focal * p[..., 0] / -p[..., 2], cy - focal * p[..., 1] / -p[..., 2]], -1)


def test_adnerf_loader_and_projection(real_export):
    base = real_export.subject.export_dir("nerf")
    metas = {s: json.loads((base / f"transforms_{s}.json").read_text()) for s in ("train", "val")}
    aud_features = np.load(base / "aud.npy")
    assert aud_features.shape[1:] == (16, 29)
    np.testing.assert_array_equal(aud_features, real_export.audio)
    bc_img = imread(base / "bc.jpg")
    H, W = bc_img.shape[:2]
    meta = metas["val"]
    focal, cx, cy = float(meta["focal_len"]), float(meta["cx"]), float(meta["cy"])
    fine = load_npz(real_export.subject.bfm_fine)
    bfm = BfmModel(load_front_mat(real_export.assets["bfm_front"])).double()
    lm3d = bfm.keypoints_3d(
        torch.as_tensor(fine["id"]).double(), torch.as_tensor(fine["exp"]).double()
    ).numpy()
    x = lm3d @ fine["w2c"][:, :3, :3].transpose(0, 2, 1) + fine["w2c"][:, None, :3, 3]
    own = x @ fine["K"].T
    own = own[..., :2] / own[..., 2:]  # the fit's own projection (crop pixels)
    errs = []
    for s in ("train", "val"):
        for frame in metas[s]["frames"]:
            i = frame["img_id"]
            head = imread(base / "head_imgs" / f"{i}.jpg")
            com = imread(base / "com_imgs" / f"{i}.jpg")
            assert head.shape == com.shape == (H, W, 3)
            aud = aud_features[min(frame["aud_id"], aud_features.shape[0] - 1)]
            assert aud.shape == (16, 29)
            rect = np.array(frame["face_rect"], dtype=np.int32)
            assert rect.shape == (4,) and (rect >= 0).all()
            pose = np.array(frame["transform_matrix"]).astype(np.float32)
            px = adnerf_project(lm3d[i] / 10.0, pose.astype(np.float64), focal, cx, cy)
            errs.append(np.linalg.norm(px - own[i], axis=-1))
    err = np.concatenate(errs)
    assert err.max() < TOL_PX, f"AD-NeRF's rays miss the landmarks by {err.max():.3f} px"
    # head_imgs: the head over bc.jpg (process_data.py step 5)
    i = metas["train"]["frames"][0]["img_id"]
    labels = read_image(real_export.subject.parsing_path(i), "gray")
    frame_rgb = read_image(real_export.subject.crop_frame_path(i)).astype(float)
    head = imread(base / "head_imgs" / f"{i}.jpg").astype(float)
    is_head = np.isin(labels, HEAD_LABELS)
    assert np.abs(head - frame_rgb)[is_head].mean() < 6  # JPEG
    assert np.abs(head - bc_img.astype(float))[~is_head].mean() < 6
