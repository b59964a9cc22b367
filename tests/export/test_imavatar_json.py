"""IMAvatar flame_params.json: a file in the public tools' layout reads back into our canonical
camera, and projecting with it matches IMAvatar's own projection formula."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prep.errors import BadInputError
from prep.export.imavatar_json import normalise_px, read_flame_params_json
from prep.track.flame_fit import init_from_deca_code


def _imavatar_project(points_flame, world_mat, intr, size):
    """IMAvatar's optimize.py projection: x4 FLAME, identity R, u = x/z * K0 + K2 in [-1, 1]."""
    cam = 4 * points_flame + world_mat[:, 3]
    k = np.array([intr[0] * 2, intr[1] * 2, intr[2] * 2 - 1, intr[3] * 2 - 1])
    u = cam[:, 0] / cam[:, 2] * k[0] + k[2]
    v = cam[:, 1] / cam[:, 2] * k[1] + k[3]
    return (np.stack([u, v], -1) + 1) / 2 * size  # back to pixels


def test_public_layout_reads_into_canonical(tmp_path):
    size, fx, c = 512, 1500.0, 256.0
    intr = [-fx / size, fx / size, c / size, c / size]
    frame = {
        "file_path": "./image/1",
        "world_mat": [[1, 0, 0, 0.01], [0, 1, 0, -0.02], [0, 0, 1, -4]],
        "expression": [0.0] * 50,
        "pose": [0.0] * 15,
        "bbox": [-0.5, -0.5, 0.5, 0.5],
        "flame_keypoints": [[0.0, 0.0]] * 70,
    }
    path = tmp_path / "flame_params.json"
    path.write_text(
        json.dumps({"frames": [frame], "intrinsics": intr, "shape_params": [0.0] * 100})
    )
    p = read_flame_params_json(path)
    assert p.stems == ["1"] and p.eyelids is None and np.all(p.translation == 0)
    canon = p.canonical((size, size))
    pts = np.array([[0.03, 0.02, 0.05], [-0.04, -0.05, 0.02]])
    x = (pts + canon["transl"][0]) @ canon["w2c"][0, :3, :3].T + canon["w2c"][0, :3, 3]
    uvw = x @ canon["K"].T
    ours = uvw[:, :2] / uvw[:, 2:]
    theirs = _imavatar_project(pts, np.asarray(frame["world_mat"]), intr, size)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(normalise_px(ours, (size, size)), theirs / size * 2 - 1, atol=1e-12)


def test_reader_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"frames": []}))
    with pytest.raises(BadInputError, match="intrinsics"):
        read_flame_params_json(path)


def test_deca_code_init_matches_imavatar_numbering():
    code = {
        str(k): {
            "shape": [[k * 1.0] * 100],
            "exp": [[0.5] * 50],
            "pose": [[0.1, 0, 0, 0.2, 0, 0]],
            "cam": [[5.0, 0, 0]],
        }
        for k in (1, 2)
    }
    init = init_from_deca_code(code, np.array(["000000.png", "000001.png", "000002.png"]), 80, 30)
    np.testing.assert_allclose(init.shape, np.full(80, 1.5))  # mean over the frames found
    assert init.expr.shape == (3, 30) and init.expr[2].sum() == 0  # frame 3 has no code
    np.testing.assert_allclose(init.global_pose[0], [0.1, 0, 0])
    np.testing.assert_allclose(init.jaw_pose[1], [0.2, 0, 0])
