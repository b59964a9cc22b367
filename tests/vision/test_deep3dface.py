"""Deep3DFaceRecon regressor: released key layout, checkpoint loading, the authors' alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from prep.config import Config
from prep.errors import MissingAssetError
from prep.track.bfm_align import aligned_from_source, apply_affine, pos_align
from prep.vision.deep3dface import (
    Deep3dFaceNet,
    aligned_batch,
    alignment_points,
    load_deep3dface,
    load_lm3d,
)
from tests.fixtures.authors_layouts import deep3dface_net_recon, random_state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = Deep3dFaceNet()
    with torch.no_grad():
        for p in net.final_layers.parameters():
            p.normal_(0, 0.01)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("d3d") / "epoch_20.pth"
    torch.save({"net_recon": net.state_dict(), "epoch": 20}, path)
    return path, net.eval()


def test_state_dict_has_exactly_the_released_layout():
    """Key names and shapes equal ReconNetWrapper's (Deep3DFaceRecon models/networks.py 69-104)."""
    ours = {k: tuple(v.shape) for k, v in Deep3dFaceNet().state_dict().items()}
    assert ours == deep3dface_net_recon()


def test_checkpoint_in_the_released_layout_loads_strictly(tmp_path):
    sd = random_state(deep3dface_net_recon())
    torch.save({"net_recon": sd, "epoch": 20}, tmp_path / "epoch_20.pth")
    net = load_deep3dface(tmp_path / "epoch_20.pth")
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_checkpoint_loads_and_reproduces_the_network(checkpoint):
    path, net = checkpoint
    loaded = load_deep3dface(path)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
        assert loaded(x).shape == (1, 257)


def test_wrong_checkpoint_is_a_clear_asset_error(tmp_path):
    bad = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": {"fc.weight": torch.zeros(3)}}, bad)
    with pytest.raises(MissingAssetError, match="not a Deep3DFaceRecon resnet50 checkpoint"):
        load_deep3dface(bad)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MissingAssetError, match="unreadable checkpoint"):
        load_deep3dface(bad)


def test_aligned_image_puts_a_landmark_where_the_landmark_formula_says():
    # a bright dot at a landmark must land where the aligned landmark coordinates say
    img = np.zeros((300, 300, 3), np.uint8)
    img[148:153, 98:103] = 255
    tp = np.array([[300, 300, 0.8, 120.0, 160.0]])
    out = aligned_batch([img], tp)[0].mean(0).numpy()
    y, x = np.unravel_index(out.argmax(), out.shape)
    expected = apply_affine(aligned_from_source(tp), np.array([[[100.0, 150.0]]]))[0, 0]
    assert abs(x - expected[0]) <= 1.5 and abs(y - expected[1]) <= 1.5


def _their_five_points(lm68: np.ndarray) -> np.ndarray:
    """util/preprocess.py extract_5p / util/load_mats.py load_lm3d (lines 111-114): the 1-based
    indices 31, 37, 40, 43, 46, 49, 55, eye pairs averaged, reordered [1, 2, 0, 3, 4]."""
    idx = np.array([31, 37, 40, 43, 46, 49, 55]) - 1
    p = np.stack(
        [
            lm68[idx[0]],
            lm68[idx[[1, 2]]].mean(0),
            lm68[idx[[3, 4]]].mean(0),
            lm68[idx[5]],
            lm68[idx[6]],
        ]
    )
    return p[[1, 2, 0, 3, 4]]


def test_lm3d_file_gives_the_authors_five_points(tmp_path):
    rng = np.random.default_rng(0)
    lm = rng.normal(size=(68, 3)).astype(np.float32)
    savemat(tmp_path / "similarity_Lm3D_all.mat", {"lm": lm})
    np.testing.assert_allclose(
        load_lm3d(tmp_path / "similarity_Lm3D_all.mat"), _their_five_points(lm.astype(np.float64))
    )
    savemat(tmp_path / "bad.mat", {"lm": lm[:5]})
    with pytest.raises(MissingAssetError, match="bfm_lm3d.*expected \\(68, 3\\)"):
        load_lm3d(tmp_path / "bad.mat")


def test_alignment_points_prefer_the_file_and_fall_back_to_the_mean_shape(tmp_path):
    cfg = Config()
    cfg.assets.bfm_lm3d = str(tmp_path / "similarity_Lm3D_all.mat")
    mean = np.arange(68 * 3, dtype=np.float64).reshape(68, 3)
    np.testing.assert_allclose(alignment_points(cfg, mean), _their_five_points(mean))
    savemat(cfg.assets.bfm_lm3d, {"lm": -mean.astype(np.float32)})
    np.testing.assert_allclose(alignment_points(cfg, mean), -_their_five_points(mean))


def _their_alignment(im: Image.Image, lm_up: np.ndarray, lm3d: np.ndarray):
    """Deep3DFaceRecon util/preprocess.py align_img (lines 175-204) with POS (24-46) and
    resize_n_crop_img (143-164), step by step with their numpy types; PIL as they call it."""
    w0, h0 = im.size
    xp, x = _their_five_points(lm_up).T, lm3d.T  # lm3d: load_lm3d's five points
    A = np.zeros([10, 8])
    A[0:9:2, 0:3], A[0:9:2, 3] = x.T, 1
    A[1:10:2, 4:7], A[1:10:2, 7] = x.T, 1
    k = np.linalg.lstsq(A, np.reshape(xp.T, [10, 1]), rcond=None)[0]
    s = 102.0 / ((np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2)
    t = np.stack([k[3], k[7]], axis=0)
    w, h = (w0 * s).astype(np.int32), (h0 * s).astype(np.int32)
    left = (w / 2 - 224.0 / 2 + float((t[0] - w0 / 2) * s)).astype(np.int32)
    up = (h / 2 - 224.0 / 2 + float((h0 / 2 - t[1]) * s)).astype(np.int32)
    out = im.resize((w, h), resample=Image.Resampling.BICUBIC)
    out = out.crop((left, up, left + 224.0, up + 224.0))
    return np.array([w0, h0, s, t[0, 0], t[1, 0]]), np.asarray(out)


def test_alignment_equals_deep3dfacerecons_on_real_photos(shared_data):
    """test.py read_data (lines 25-36): PIL RGB image, 68 landmarks with y flipped (H - 1 - y),
    align_img; our pos_align + aligned_batch must give the same parameters and pixels."""
    from tests.vision.face_data import PHOTOS, photo_results

    res = photo_results(str(shared_data / "photos"), "mediapipe")
    # a face-like 3D layout (eye centres, nose tip, mouth corners) in the file's units
    lm3d = np.array(
        [
            [-0.35, 0.3, 0.3],
            [0.35, 0.3, 0.3],
            [0.0, 0.0, 0.6],
            [-0.25, -0.35, 0.3],
            [0.25, -0.35, 0.3],
        ]
    )
    for k, name in enumerate(PHOTOS):
        im = Image.open(shared_data / "photos" / name).convert("RGB")
        lm = res.points_px[k].astype(np.float64)
        lm_up = np.stack([lm[:, 0], im.size[1] - 1 - lm[:, 1]], 1)
        want_tp, want = _their_alignment(im, lm_up, lm3d)
        tp = pos_align(lm[None], (im.size[1], im.size[0]), lm3d)
        np.testing.assert_allclose(tp[0], want_tp, rtol=1e-9)
        got = aligned_batch([np.asarray(im)], tp)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), want)
