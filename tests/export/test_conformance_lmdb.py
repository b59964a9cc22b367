"""PIRender (256) and OTAvatar (512) read the packed LMDB of a real clip as their datasets do, and
its geometry is that of the stored frames.

The steps below are ours, written from reading RenYurui/PIRender ``data/vox_dataset.py`` 13-130
(``<path>/<resolution>``, train_list.txt, ``<video>-length``, frames, ``coeff_3dmm`` reshaped to
(n, -1), the 73 driving values: expression 80:144, angles 224:227, translation 254:257, crop
257:260) and ``data/vox_video_dataset.py`` 14-59 (inference from test_list.txt), theEricMa/OTAvatar
``data/dataset.py`` 24-198 (``<path>/512``, keypoint (n, 68, 2), id, condition (n, 7) = [-euler,
trans, focal]) and ``config/otavatar.yaml`` (resolution 512), and theEricMa/OTAvatar_processing
``LmdbPrepare/prepare_lmdb.py`` (crop parameters and keypoints are those of the packed frames).
"""

from __future__ import annotations

import io

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from prep.export.cameras import euler_to_matrix
from prep.io.files import load_npz
from prep.models.bfm import BfmModel
from prep.models.bfm_io import load_front_mat
from prep.track.bfm_align import aligned_from_source, apply_affine
from tests.export.conformance import TOL_PX

pytestmark = pytest.mark.slow


def format_for_lmdb(*args) -> bytes:
    return "-".join(str(a).zfill(7) if isinstance(a, int) else a for a in args).encode("utf-8")


def open_env(path, resolution):
    return lmdb.open(
        str(path / str(resolution)),
        max_readers=32,
        readonly=True,
        lock=False,
        readahead=False,
        meminit=False,
    )


def video_lengths(env, path, is_inference):
    """VoxDataset / HDTFDataset __init__: the video list and each video's length."""
    list_file = path / ("test_list.txt" if is_inference else "train_list.txt")
    videos = [line.replace("\n", "") for line in list_file.read_text().splitlines(True)]
    with env.begin(write=False) as txn:
        return {v: int(txn.get(format_for_lmdb(v, "length")).decode("utf-8")) for v in videos}


def read_video(env, video, n):
    with env.begin(write=False) as txn:
        frames = [
            np.asarray(Image.open(io.BytesIO(txn.get(format_for_lmdb(video, i))))) for i in range(n)
        ]
        arr = {
            k: np.frombuffer(txn.get(format_for_lmdb(video, k)), dtype=np.float32)
            for k in ("coeff_3dmm", "keypoint", "condition", "id")
        }
    return frames, arr


@pytest.mark.parametrize("size", [256, 512])
def test_lmdb_loaders_and_geometry(real_export, size):
    path = real_export.subject.lmdb_dir
    env = open_env(path, size)
    lengths = video_lengths(env, path, is_inference=False)
    assert lengths and lengths == video_lengths(env, path, is_inference=True)  # PIRender test
    video, n = next(iter(lengths.items()))
    frames, arr = read_video(env, video, n)
    assert all(f.shape == (size, size, 3) for f in frames)
    coeff = arr["coeff_3dmm"].reshape((n, -1))
    assert coeff.shape[1] == 260
    semantic = np.concatenate(
        [coeff[:, 80:144], coeff[:, 224:227], coeff[:, 254:257], coeff[:, 257:260]], 1
    )
    assert semantic.shape == (n, 73)
    kp = arr["keypoint"].reshape((n, 68, 2))
    cond = arr["condition"].reshape((n, -1))
    assert cond.shape[1] == 7
    fine = load_npz(real_export.subject.bfm_fine)
    assert arr["id"].size == fine["id"].shape[-1]
    coarse = load_npz(real_export.subject.bfm_coarse)
    lm = load_npz(real_export.subject.landmarks_npz)
    N = int(lm["image_hw"][1])
    r = size / N
    ok = np.isfinite(lm["points_px"]).all((1, 2))
    # keypoints are in stored pixels: a pixel centre x of the crop is (x + 0.5) r - 0.5 here
    np.testing.assert_allclose(kp[ok], (lm["points_px"][ok] + 0.5) * r - 0.5, atol=1e-3)
    # the crop parameters align the stored frame to the same 224 crop Deep3DFaceRecon made
    tp_stored = np.concatenate([np.full((n, 2), size), coeff[:, 257:260]], 1)
    aligned_stored = apply_affine(aligned_from_source(tp_stored), kp)
    aligned_crop = apply_affine(
        aligned_from_source(coarse["trans_params"].astype(np.float64)), lm["points_px"]
    )
    assert np.abs(aligned_stored - aligned_crop)[ok].max() < 1e-2
    # the condition camera (AD-NeRF's: R = euler2rot, u = -f x / z + c) draws the fitted BFM
    # landmarks on the stored frame where the fit drew them on the crop
    bfm = BfmModel(load_front_mat(real_export.assets["bfm_front"])).double()
    lm3d = bfm.keypoints_3d(
        torch.as_tensor(fine["id"]).double(), torch.as_tensor(fine["exp"]).double()
    ).numpy()
    x = np.einsum("tij,tnj->tni", euler_to_matrix(-cond[:, :3]), lm3d) + cond[:, None, 3:6]
    c = (size - 1) / 2
    f = cond[:, -1:].astype(np.float64)
    px = np.stack([c - f * x[..., 0] / x[..., 2], c + f * x[..., 1] / x[..., 2]], -1)
    xo = lm3d @ fine["w2c"][:, :3, :3].transpose(0, 2, 1) + fine["w2c"][:, None, :3, 3]
    own = xo @ fine["K"].T
    own = (own[..., :2] / own[..., 2:] + 0.5) * r - 0.5
    err = np.linalg.norm(px - own, axis=-1)
    assert err.max() < TOL_PX, f"the condition camera draws landmarks {err.max():.3f} px off"
    env.close()
