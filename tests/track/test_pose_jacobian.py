"""The tracker's closed-form pose and translation Jacobian columns equal autograd's.

`point_jacobians` builds the global, neck, jaw, eye pose and translation columns from the
closed-form derivative of linear blend skinning (prep/track/pose_jacobian.py). Here the
reference is forward-mode autograd (`torch.func.jacfwd`) straight through the FLAME forward
(`FlameObjective.points_px`: FlameModel.forward -> lbs.skin -> landmarks -> projection), in
float64, on a tiny synthetic FLAME with eyelids and dense MediaPipe points, at random non-zero
poses plus a frame whose rotations are ~1e-8 rad (the small-angle series of Rodrigues' formula
and of SO(3)'s right Jacobian) and one whose rotations are near pi/2.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from prep.config.flame import FlameConfig, TrackerConfig
from prep.models.flame import contour_bins
from prep.models.rotations import axis_angle_to_matrix
from prep.track.flame_data import FlameDataModule
from prep.track.flame_fit import build_flame
from prep.track.flame_jacobian import make_layout, point_jacobians
from prep.track.flame_params import FlameParams
from prep.track.objective import FlameObjective
from prep.track.pose_jacobian import so3_right_jacobian
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_flame import write_tiny_assets
from tests.fixtures.synthetic_sequence import make_sequence

T = 5
POSES = {"global_pose": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6}


def _rotations(rng: np.random.Generator, dim: int) -> np.ndarray:
    """(T, dim) axis-angles: random, then ~1e-8 rad, then near pi/2, per 3-vector."""
    x = rng.normal(0, 0.3, (T, dim))
    axes = rng.normal(size=(2, dim // 3, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    x[1] = (axes[0] * 1e-8).reshape(-1)
    x[2] = (axes[1] * (np.pi / 2 - 0.05)).reshape(-1)
    return x


@pytest.fixture(scope="module", params=[True, False], ids=["per_frame_transl", "shared_transl"])
def problem(request, tmp_path_factory):
    assets = write_tiny_assets(tmp_path_factory.mktemp("flame_pose"), seed=2, eyelids=True)
    flame = build_flame(assets, FlameConfig(n_shape=6, n_expr=5), dense=True, dtype=torch.float64)
    oracle = FlameOracle.from_assets(assets, 6, 5, dense=True)
    seq = make_sequence(oracle, T, seed=4, size=256, focal=900.0, noise_px=1.0)
    rng = np.random.default_rng(5)
    n_mp = len(flame.mp_bary)
    data = dataclasses.replace(
        seq.data, dense_px=rng.uniform(60, 200, (T, n_mp, 2)), dense_w=np.ones((T, n_mp))
    )
    cfg = TrackerConfig()
    cfg.w.dense = 1.0
    p = FlameParams(T, 6, 5, True, request.param, 900.0, True, 1.0, 127.5, 127.5, torch.float64)
    for name, dim in POSES.items():
        p.set_value(name, torch.as_tensor(_rotations(rng, dim)))
    p.set_value("shape", torch.as_tensor(rng.normal(0, 1, 6)))
    p.set_value("expr", torch.as_tensor(rng.normal(0, 1, (T, 5))))
    p.set_value("eyelids", torch.as_tensor(rng.normal(0, 0.3, (T, 2))))
    n_tr = T if request.param else 1
    p.set_value("transl", torch.as_tensor(rng.normal([0, 0, 0.6], 0.02, (n_tr, 3))))
    return FlameObjective(flame, p, cfg, False, FlameDataModule(data, torch.float64).batch)


def _autograd_columns(obj, name: str) -> torch.Tensor:
    """(T, 2N, d) d residual / d `name` of each frame from jacfwd through the FLAME forward."""
    v = obj.values(detach=True)
    bins = contour_bins(v["global_pose"], v["neck_pose"])
    x = v[name]
    if name == "transl" and obj.params.u_transl.shape[0] == 1:
        x = x[:1]  # one shared translation, expanded to every frame

    def residuals(xx):
        vv = {**v, name: xx.expand(T, -1)}
        return (obj.points_px(vv, slice(None), bins) / obj.scale).reshape(T, -1)

    J = torch.func.jacfwd(residuals)(x)  # (T, 2N, rows of x, d)
    if x.shape[0] == 1:
        return J[:, :, 0]
    frames = torch.arange(T)
    off = J.clone()
    off[frames, :, frames] = 0
    assert off.abs().max() == 0  # a frame's residuals move only with its own parameters
    return J[frames, :, frames]


@pytest.mark.parametrize("name", [*POSES, "transl"])
def test_pose_columns_equal_autograd(problem, name):
    lay = make_layout(problem.params, [*POSES, "transl", "shape", "expr", "eyelids"])
    _, jf, js = point_jacobians(problem, lay, slice(0, T))
    shared, i, d = lay.find(name)
    got = (js if shared else jf)[..., i : i + d]
    want = _autograd_columns(problem, name)
    assert want.abs().amax((1, 2)).min() > 0  # every frame's columns move
    for t in range(T):  # per frame: relative to the frame's own scale
        scale = want[t].abs().max()
        torch.testing.assert_close(got[t] / scale, want[t] / scale, rtol=0, atol=1e-10)


def test_right_jacobian_is_the_derivative_of_rodrigues():
    """``R(w + h d) ~ R(w) exp([h J_r d]x)``: a central difference, float64, at small, medium
    and near-pi angles."""
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(4, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    w = torch.as_tensor(axes * np.array([1e-8, 1e-3, 1.0, 3.0])[:, None])
    Jr = so3_right_jacobian(w)
    R = axis_angle_to_matrix(w)
    h = 1e-6
    for i in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[i] = h
        dR = (axis_angle_to_matrix(w + d) - axis_angle_to_matrix(w - d)) / (2 * h)
        omega = R.mT @ dR  # [J_r e_i]x
        got = torch.stack([omega[:, 2, 1], omega[:, 0, 2], omega[:, 1, 0]], -1)
        torch.testing.assert_close(got, Jr[..., i], rtol=0, atol=1e-8)
