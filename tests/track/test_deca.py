"""DECA encoder: the released ``E_flame`` layout loads strictly; the input crop is DECA's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from prep.errors import MissingAssetError
from prep.track.deca import DECA_SPLIT, DecaEncoder, deca_boxes, face_crops, load_deca_encoder
from tests.authors_code import authors_module
from tests.fixtures.authors_layouts import deca_e_flame, random_state


def _write_ckpt(path: Path, sd: dict) -> Path:
    torch.save({"E_flame": sd, "E_detail": {}, "D_detail": {}}, path)
    return path


def test_our_encoder_has_exactly_decas_layout():
    """Key names and shapes equal DECA's ResnetEncoder (decalib/models/encoders.py, resnet.py)."""
    ours = {k: tuple(v.shape) for k, v in DecaEncoder().state_dict().items()}
    assert ours == deca_e_flame()


def test_checkpoint_in_decas_layout_loads_strictly_and_runs(tmp_path):
    sd = random_state(deca_e_flame())
    model = load_deca_encoder(_write_ckpt(tmp_path / "deca_model.tar", sd))
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    with torch.no_grad():
        out = model(torch.rand(2, 3, 224, 224))
    assert {k: v.shape[1] for k, v in out.items()} == DECA_SPLIT


def test_wrong_layout_is_refused(tmp_path):
    layout = deca_e_flame()
    sd = random_state({k: s for k, s in layout.items() if not k.startswith("layers.2")})
    with pytest.raises(MissingAssetError, match="layout differs"):
        load_deca_encoder(_write_ckpt(tmp_path / "bad.tar", sd))
    extra = random_state(layout) | {"encoder.fc.weight": torch.zeros(1000, 2048)}
    with pytest.raises(MissingAssetError, match="layout differs"):  # DECA's trunk has no fc
        load_deca_encoder(_write_ckpt(tmp_path / "fc.tar", extra))
    (tmp_path / "junk.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingAssetError, match="unreadable"):
        load_deca_encoder(tmp_path / "junk.tar")


def test_crop_box_is_decas_kpt68_rule():
    """yfeng95/DECA decalib/datasets/datasets.py: bbox2point 'kpt68' (lines 84-86) gives
    old_size = (w + h) / 2 * 1.1 about the box centre; line 127: size = int(old_size * 1.25)."""
    pts = np.zeros((1, 68, 2))
    pts[0, :, 0] = np.linspace(100.0, 201.0, 68)  # w = 101
    pts[0, :, 1] = np.linspace(50.0, 130.0, 68)  # h = 80
    centre, side = deca_boxes(pts)
    np.testing.assert_allclose(centre[0], [150.5, 90.0])
    assert side[0] == int((101 + 80) / 2 * 1.1 * 1.25) == 124


def test_face_crops_sample_decas_similarity_exactly():
    """Bilinear sampling reproduces a linear ramp exactly, so every crop pixel must hold the
    ramp's value at DECA's source point: datasets.py lines 127-137 map the square's corners
    (centre -/+ size/2) onto pixels 0 and 223, i.e. source = corner + crop_px * size / 223."""
    yy, xx = np.mgrid[0:120, 0:120]
    img = np.repeat((xx + yy).astype(np.uint8)[..., None], 3, 2)  # ramp x + y, at most 238
    pts = np.array([[[40.0, 40.0], [80.0, 80.0]]])  # box 40 x 40 -> side int(55.0) = 55
    crop = face_crops([img], pts)[0, 0].astype(np.float64) * 255
    src = 60.0 - 55 / 2 + np.arange(224) * 55 / 223  # inside the image on both axes
    np.testing.assert_allclose(crop, src[None, :] + src[:, None], atol=2e-4)


def test_face_crops_are_zero_outside_the_image():
    img = np.full((100, 100, 3), 255, np.uint8)
    pts = np.array([[[0.0, 0.0], [40.0, 40.0]]])  # box at the top-left corner: crop leaves it
    crop = face_crops([img], pts)[0]
    assert crop[:, 0, 0].max() == 0.0 and crop[:, 200, 200].min() == 1.0


@pytest.mark.equiv
def test_face_crops_equal_decas_skimage_warp_on_real_photos(shared_data):
    """Full DECA crop path on the real photos, against scikit-image as DECA calls it
    (decalib/datasets/datasets.py lines 127-137: estimate_transform('similarity', src_pts,
    DST_PTS), then warp(image / 255., tform.inverse, output_shape=(224, 224)))."""
    transform = authors_module("skimage.transform")
    import cv2

    from tests.vision.face_data import PHOTOS, photo_results

    res = photo_results(str(shared_data / "photos"), "mediapipe")
    for k, name in enumerate(PHOTOS):
        img = cv2.imread(str(shared_data / "photos" / name))[:, :, ::-1].copy()
        kpt = res.points_px[k].astype(np.float64)
        left, right = kpt[:, 0].min(), kpt[:, 0].max()
        top, bottom = kpt[:, 1].min(), kpt[:, 1].max()
        old_size = (right - left + bottom - top) / 2 * 1.1
        center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
        size = int(old_size * 1.25)
        src = np.array(
            [
                [center[0] - size / 2, center[1] - size / 2],
                [center[0] - size / 2, center[1] + size / 2],
                [center[0] + size / 2, center[1] - size / 2],
            ]
        )
        dst = np.array([[0, 0], [0, 223], [223, 0]])
        tform = transform.estimate_transform("similarity", src, dst)
        want = transform.warp(img / 255.0, tform.inverse, output_shape=(224, 224))
        got = face_crops([img], kpt[None])[0].transpose(1, 2, 0)
        assert np.abs(got - want).max() < 3e-5, name  # float32 sampling: 1.2e-5 measured


@pytest.mark.weights
def test_real_deca_checkpoint():
    root = Path(os.environ.get("AVATAR_PREP_ASSETS", Path.home() / ".cache/avatar-prep/assets"))
    path = root / "deca" / "deca_model.tar"
    if not path.exists():
        pytest.skip(f"DECA checkpoint not present: {path}")
    model = load_deca_encoder(path)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    assert out["shape"].abs().max() < 100
