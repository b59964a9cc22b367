"""Importers on small hand-made folders: conventions, ordering and one-line errors. (The
round trips through the exports run on a real clip in tests/export/test_import_round_trip.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from prep.errors import BadInputError
from prep.importers import metrical, read_importer
from prep.io.files import write_image


def test_6d_rotations_are_pytorch3ds_first_two_rows():
    R = Rotation.from_rotvec(np.random.default_rng(0).normal(0, 0.5, (5, 3))).as_matrix()
    d6 = R[:, :2, :].reshape(5, 6)  # pytorch3d matrix_to_rotation_6d
    aa = metrical.rotation_6d_to_axis_angle(d6 * 1.7)  # Gram-Schmidt ignores the scale
    np.testing.assert_allclose(Rotation.from_rotvec(aa).as_matrix(), R, atol=1e-12)


def _metrical_folder(root, T=3, corrupt=False):
    (root / "checkpoint").mkdir(parents=True)
    (root / "input").mkdir()
    eye6 = np.eye(3)[:2].reshape(6)
    for k in range(T):
        fid = f"{k:05d}"
        frame = {
            "flame": {
                "exp": np.full((1, 100), 0.1 * k, np.float32),
                "shape": np.ones((1, 300), np.float32),
                "eyes": np.tile(eye6, 2)[None].astype(np.float32),
                "eyelids": np.zeros((1, 2), np.float32),
                "jaw": eye6[None].astype(np.float32),
            },
            "opencv": {
                "R": np.diag([1.0, -1, -1])[None].astype(np.float32),
                "t": np.array([[0, 0, 1.0]], np.float32),
                "K": np.array([[[500, 0, 32], [0, 500, 32], [0, 0, 1]]], np.float32),
            },
            "img_size": np.array([64, 64]),
            "frame_id": fid,
        }
        path = root / "checkpoint" / f"{fid}.frame"
        if corrupt and k == 1:
            path.write_bytes(b"not a checkpoint")
        else:
            torch.save(frame, path)
        write_image(root / "input" / f"{fid}.png", np.zeros((64, 64, 3), np.uint8))


def test_metrical_checkpoint_conventions(tmp_path):
    _metrical_folder(tmp_path / "a")
    imp = read_importer("metrical", tmp_path / "a")
    assert imp.n_frames == 3 and imp.image_size == (64, 64)
    np.testing.assert_allclose(imp.K[0, :2, 2], [31.5, 31.5])  # pytorch3d's w / 2 -> ours
    np.testing.assert_allclose(imp.params["expr"][2], 0.2, atol=1e-6)
    np.testing.assert_allclose(imp.params["jaw_pose"], 0, atol=1e-7)
    np.testing.assert_allclose(imp.w2c[:, 2, 3], 1.0)
    assert [p.name for p in imp.frame_files] == ["00000.png", "00001.png", "00002.png"]


def test_corrupt_checkpoint_is_one_line(tmp_path):
    _metrical_folder(tmp_path / "a", corrupt=True)
    with pytest.raises(BadInputError, match="00001.frame"):
        read_importer("metrical", tmp_path / "a")


def test_imavatar_folder_needs_detections_or_a_fit(tmp_path):
    (tmp_path / "s" / "image").mkdir(parents=True)
    for k in (1, 2, 10):  # natural order: 1, 2, 10 (HRAvatar's natsorted)
        write_image(tmp_path / "s" / "image" / f"{k}.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(BadInputError, match="keypoint.json"):
        read_importer("imavatar", tmp_path / "s")
    kp = {f"{k}.png": np.full((68, 2), k, float).tolist() for k in (1, 2, 10)}
    (tmp_path / "s" / "keypoint.json").write_text(json.dumps(kp))
    imp = read_importer("imavatar", tmp_path / "s")
    assert [p.name for p in imp.frame_files] == ["1.png", "2.png", "10.png"]
    np.testing.assert_allclose(imp.lmk_px[:, 0, 0], [1, 2, 10])
    assert imp.params is None


def test_hravatar_tracked_params_camera(tmp_path):
    """tracked_params.json as HRAvatar's optimize.py writes it: x4 world_mat, translation."""
    s = tmp_path / "s"
    (s / "image").mkdir(parents=True)
    write_image(s / "image" / "00000.png", np.zeros((8, 8, 4), np.uint8))
    wm = [[1, 0, 0, 0.04], [0, 1, 0, -0.08], [0, 0, 1, -4.0], [0, 0, 0, 1]]
    doc = {
        "world_mat": wm,
        "intrinsics": [1500.0, 1500.0, 4.0, 4.0],
        "shapecode": [[0.5] * 100],
        "00000.png": {
            "expcode": [[0.1] * 100],
            "fullposecode": [[0.0] * 15],
            "world_mat": wm,
            "translation": [[0.01, 0.0, 0.0]],
            "cam": [[5.0, 0, 0]],
        },
    }
    (s / "tracked_params.json").write_text(json.dumps(doc))
    imp = read_importer("imavatar", s)
    np.testing.assert_allclose(imp.params["transl"][0], [0.01 + 0.01, -0.02, -1.0])
    np.testing.assert_allclose(imp.w2c[0, :3, :3], np.diag([1.0, -1, -1]))
    np.testing.assert_allclose(imp.K[0], [[1500, 0, 4], [0, 1500, 4], [0, 0, 1]])
    assert imp.alpha_in_images and imp.model == "flame2020"
