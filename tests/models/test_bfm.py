"""BFM loaders (front .mat, built from BFM2009, AD-NeRF npy) and the torch model's conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch

from prep.errors import MissingAssetError
from prep.models.bfm import (
    BfmModel,
    adnerf_w2c,
    deep3d_K,
    deep3d_w2c,
    sh_shade,
    split_coeff,
    submesh,
    vertex_normals,
)
from prep.models.bfm_io import build_front_model, load_adnerf, load_front_mat, write_front_mat
from prep.models.camera import project
from tests.fixtures.synthetic_bfm import (
    write_adnerf,
    write_bfm2009_inputs,
    write_synthetic_front_mat,
)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    path = tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat"
    arrays = write_synthetic_front_mat(path)
    return path, arrays


def test_front_mat_loads_with_zero_based_indices_and_recentred_mean(front):
    path, a = front
    data = load_front_mat(path)
    assert data.id_base.shape == (3 * 3600, 80) and data.exp_base.shape[1] == 64
    np.testing.assert_array_equal(data.keypoints, a["keypoints"])
    np.testing.assert_array_equal(data.tri, a["tri"])
    np.testing.assert_allclose(data.mean_shape.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(data.mean_shape, a["mean"] - a["mean"].mean(0), atol=1e-5)


def test_front_mat_without_required_key_is_a_clear_asset_error(tmp_path):
    bad = tmp_path / "BFM_model_front.mat"
    scipy.io.savemat(str(bad), {"meanshape": np.zeros((1, 9))})
    with pytest.raises(MissingAssetError, match="missing idBase.*assets.bfm_front"):
        load_front_mat(bad)


def test_front_model_built_from_bfm2009_matches_the_reference(tmp_path):
    expected = write_bfm2009_inputs(tmp_path)
    content = build_front_model(tmp_path / "01_MorphableModel.mat", tmp_path / "Exp_Pca.bin")
    out = tmp_path / "BFM_model_front.mat"
    write_front_mat(out, content)
    data = load_front_mat(out)
    np.testing.assert_allclose(data.id_base, expected["id_base"][:, :80], atol=1e-5)
    np.testing.assert_allclose(data.exp_base, expected["exp_base"][:, :64], atol=1e-5)
    np.testing.assert_allclose(data.tex_base, expected["tex_base"][:, :80], atol=1e-3)
    np.testing.assert_array_equal(data.keypoints, expected["keypoints"])


def test_build_without_index_files_names_what_to_copy(tmp_path):
    write_bfm2009_inputs(tmp_path)
    (tmp_path / "BFM_front_idx.mat").unlink()
    with pytest.raises(MissingAssetError, match="Deep3DFaceRecon.*BFM_front_idx.mat"):
        build_front_model(tmp_path / "01_MorphableModel.mat", tmp_path / "Exp_Pca.bin")


def test_adnerf_folds_sigmas_into_unit_variance_bases(tmp_path):
    a = write_adnerf(tmp_path)
    data = load_adnerf(tmp_path / "3DMM_info.npy")
    assert data.id_base.shape == (3 * 3600, 100) and data.exp_base.shape[1] == 79
    np.testing.assert_allclose(data.id_base, a["id_base"], atol=1e-6)
    np.testing.assert_allclose(data.exp_base, a["exp_base"], atol=1e-6)
    (tmp_path / "keys_info.npy").unlink()
    with pytest.raises(MissingAssetError, match="keys_info.npy"):
        load_adnerf(tmp_path / "3DMM_info.npy")


def test_subset_evaluation_equals_full_mesh(front):
    model = BfmModel(load_front_mat(front[0]))
    g = torch.Generator().manual_seed(0)
    idc, exc = torch.randn(2, 80, generator=g), torch.randn(2, 64, generator=g)
    full = model.shape(idc, exc)
    torch.testing.assert_close(model.keypoints_3d(idc, exc), full[:, model.keypoints])


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def test_deep3d_camera_reproduces_its_y_up_projection_after_the_row_flip():
    angles, trans = np.array([0.2, -0.4, 0.1]), np.array([0.05, -0.1, 0.3])
    v = np.random.default_rng(0).normal(0, 0.5, (10, 3))
    # Deep3DFaceRecon: rotate, translate, camera at z=10 looking down -z, rows counted upward.
    R = _rot("z", angles[2]) @ _rot("y", angles[1]) @ _rot("x", angles[0])
    p = v @ R.T + trans
    z = 10 - p[:, 2]
    u, v_up = 1015 * p[:, 0] / z + 112, 1015 * p[:, 1] / z + 112
    expected = np.stack([u, 223 - v_up], 1)
    w2c = deep3d_w2c(torch.tensor(angles)[None], torch.tensor(trans)[None])
    xy, depth = project(torch.tensor(v)[None], deep3d_K().double(), w2c)
    np.testing.assert_allclose(xy[0].numpy(), expected, atol=1e-9)
    assert (depth > 0).all()


def test_adnerf_camera_reproduces_its_projection():
    euler, trans = np.array([0.3, 0.2, -0.25]), np.array([0.1, 0.05, -8.0])
    v = np.random.default_rng(1).normal(0, 0.5, (10, 3))
    # AD-NeRF: rot_x @ rot_y @ rot_z with its rot_z = Rz(-psi); u = -fX/Z + cx, v = fY/Z + cy.
    R = _rot("x", euler[0]) @ _rot("y", euler[1]) @ _rot("z", -euler[2])
    p = v @ R.T + trans
    f, cx, cy = 900.0, 256.0, 250.0
    expected = np.stack([-f * p[:, 0] / p[:, 2] + cx, f * p[:, 1] / p[:, 2] + cy], 1)
    K = torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=torch.float64)
    xy, depth = project(
        torch.tensor(v)[None], K, adnerf_w2c(torch.tensor(euler)[None], torch.tensor(trans)[None])
    )
    np.testing.assert_allclose(xy[0].numpy(), expected, atol=1e-9)
    assert (depth > 0).all()


def test_normals_face_the_viewer_and_shading_has_deep3d_ambient(front):
    model = BfmModel(load_front_mat(front[0]))
    verts = model.shape(torch.zeros(1, 80), torch.zeros(1, 64))
    n = vertex_normals(verts, model.tri)
    centre = verts[0, :, :2].norm(dim=-1) < 0.3
    assert (n[0, centre, 2] > 0.5).all()
    albedo = torch.full((1, 5, 3), 0.5)
    shaded = sh_shade(albedo, n[:, :5], torch.zeros(1, 27))
    # Ambient band only: 0.8 * pi * 1/sqrt(4 pi) per colour.
    torch.testing.assert_close(shaded, albedo * 0.8 * math.pi / math.sqrt(4 * math.pi))


def test_submesh_keeps_normals_of_sampled_vertices(front):
    model = BfmModel(load_front_mat(front[0]))
    verts = model.shape(torch.randn(1, 80) * 0.5, torch.randn(1, 64) * 0.5)
    ids = np.array([100, 1830, 2000, 3000])
    sub_v, sub_t, pos = submesh(model.tri.numpy(), ids)
    full = vertex_normals(verts, model.tri)[:, ids]
    part = vertex_normals(verts[:, sub_v], torch.from_numpy(sub_t))[:, pos]
    torch.testing.assert_close(part, full)


def test_split_coeff_round_trip():
    c = torch.randn(4, 257)
    parts = split_coeff(c)
    assert parts.exp.shape == (4, 64) and parts.gamma.shape == (4, 27)
    torch.testing.assert_close(parts.join(), c)
