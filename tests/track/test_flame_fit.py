"""FLAME tracker: parameter recovery on synthetic sequences, solvers, invalid frames, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prep.config.flame import FlameConfig, PhaseConfig, TrackerConfig
from prep.errors import BadConfigError
from prep.models.flame_tracking import landmarks_px
from prep.models.rotations import axis_angle_to_matrix, rotation_angle_deg
from prep.track.flame_data import camera_intrinsics_orig
from prep.track.flame_fit import (
    Camera,
    build_flame,
    fit_sequence,
    focal_from_distance,
    tracking_arrays,
)
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_sequence import make_sequence, project_px


@pytest.fixture(scope="module")
def flame(full_flame_assets):
    torch.set_num_threads(1)
    return build_flame(full_flame_assets, FlameConfig(n_shape=50, n_expr=30), dense=False)


@pytest.fixture(scope="module")
def oracle(full_flame_assets):
    """Draws the truth (independent of the FLAME layer under test)."""
    return FlameOracle.from_assets(full_flame_assets, 50, 30, dense=True)


def head_rotation_error_deg(params: dict, gt: dict) -> np.ndarray:
    def R(p):
        g = torch.as_tensor(p["global_pose"], dtype=torch.float64)
        n = torch.as_tensor(p["neck_pose"], dtype=torch.float64)
        return axis_angle_to_matrix(g) @ axis_angle_to_matrix(n)

    return rotation_angle_deg(R(params), R(gt)).numpy()


def test_recovers_pose_and_landmarks(flame, oracle):
    seq = make_sequence(oracle, 60, seed=1, noise_px=1.0, missing=(20, 26))
    out = fit_sequence(flame, seq.data, Camera(seq.focal, seq.focal, 255.5, 255.5), TrackerConfig())
    valid = seq.data.valid
    # fitted landmarks sit within the detector noise of the observations, and near the truth
    assert np.nanmean(out.lmk_rmse_px) < 2.5
    clean_err = np.sqrt(((out.lmk_px[:, :68] - seq.clean_px[:, :68]) ** 2).sum(-1).mean(1))
    assert np.median(clean_err[valid]) < 1.7
    assert head_rotation_error_deg(out.params, seq.gt)[valid].mean() < 3.5
    # invalid frames are bridged from their neighbours, not left at the initial values
    assert head_rotation_error_deg(out.params, seq.gt)[20:26].max() < 7.0
    assert np.isnan(out.lmk_rmse_px[20:26]).all()
    assert np.nanmean(out.iris_err_px) < 1.5


def test_gauss_newton_jacobian_matches_autograd(flame, oracle):
    """The analytic/jvp point Jacobians equal torch.func.jacfwd of the same residuals."""
    from prep.models.flame import contour_bins
    from prep.track.flame_data import FlameDataModule
    from prep.track.flame_jacobian import make_layout, point_jacobians
    from prep.track.flame_params import FlameParams, InitValues
    from prep.track.objective import FlameObjective

    flame64 = flame.double()
    seq = make_sequence(oracle, 6, seed=2)
    p = FlameParams(
        6,
        flame.n_shape,
        flame.n_expr,
        False,
        True,
        seq.focal,
        True,
        1.0,
        255.5,
        255.5,
        dtype=torch.float64,
    )
    p.load(InitValues(**{k: v + 0.01 for k, v in seq.gt.items()}))
    obj = FlameObjective(
        flame64, p, TrackerConfig(), False, FlameDataModule(seq.data, torch.float64).batch
    )
    lay = make_layout(p, ["all"])
    e, jf, js = point_jacobians(obj, lay, slice(0, 6))
    v = obj.values(detach=True)
    bins = contour_bins(v["global_pose"], v["neck_pose"])

    def residuals(name, x):
        return (
            (obj.points_px({**v, name: x}, bins=bins) - obj.observations()) / obj.scale
        ).reshape(6, -1)

    torch.testing.assert_close(e, residuals("expr", v["expr"]), atol=1e-12, rtol=0)
    for name, i, d in lay.frame:
        full = torch.func.jacfwd(lambda x, n=name: residuals(n, x))(v[name])
        diag = full[torch.arange(6), :, torch.arange(6)]  # (T, R, d): frame-local derivatives
        torch.testing.assert_close(jf[..., i : i + d], diag, atol=1e-9, rtol=1e-7)
    for name, i, d in lay.shared:
        x = p.value(name).detach()
        full = torch.func.jacfwd(
            lambda xx, n=name: residuals(n, xx.expand(v[n].shape) if n == "transl" else xx)
        )(x)
        torch.testing.assert_close(js[..., i : i + d], full.reshape(6, -1, d), atol=1e-9, rtol=1e-7)
    flame.float()


def test_focal_prior_from_head_distance(flame, oracle):
    """Without fx the focal is the one that puts a mean head `focal_prior_distance_m` away: a
    pinhole fact, checked on an oracle-drawn mean head at a known distance and focal."""
    for distance, focal in ((0.6, 1200.0), (1.5, 2500.0)):
        seq = make_sequence(
            oracle,
            20,
            seed=2,
            focal=focal,
            distance=distance,
            yaw_deg=5,
            shape_scale=0.0,
            noise_px=0.0,
        )
        assert focal_from_distance(flame, seq.data, distance) == pytest.approx(focal, rel=0.03)
    out = fit_sequence(
        flame,
        seq.data,
        Camera(None, None, 255.5, 255.5),
        TrackerConfig(
            focal_prior_distance_m=1.5, phases=[PhaseConfig("rigid", ["global_pose", "transl"], 2)]
        ),
    )
    assert out.K_orig[0, 0] == pytest.approx(focal_from_distance(flame, seq.data, 1.5))


def test_estimated_focal_and_shared_translation(flame, oracle):
    seq = make_sequence(oracle, 30, seed=3, yaw_deg=40, noise_px=0.5)
    cfg = TrackerConfig(with_translation=False, estimate_focal=True)
    out = fit_sequence(flame, seq.data, Camera(None, None, 255.5, 255.5), cfg)
    # shared translation cannot follow the head's small translation; the fit still lands close
    assert np.nanmean(out.lmk_rmse_px) < 4.0
    assert np.ptp(out.params["transl"], axis=0).max() == 0.0
    # focal and depth trade off against head size: landmarks alone pin the focal only loosely
    assert seq.focal / 3 < out.K_orig[0, 0] < 3 * seq.focal


def test_lbfgs_solver_runs(flame, oracle):
    seq = make_sequence(oracle, 10, seed=4)
    cfg = TrackerConfig(
        solver="lbfgs",
        phases=[
            PhaseConfig("rigid", ["global_pose", "transl"], 20),
            PhaseConfig("joint", ["all"], 30),
        ],
    )
    out = fit_sequence(flame, seq.data, Camera(seq.focal, seq.focal, 255.5, 255.5), cfg)
    assert np.nanmean(out.lmk_rmse_px) < 15.0


def test_single_frame_and_fixed_shape(flame, oracle):
    seq = make_sequence(oracle, 1, seed=5)
    out = fit_sequence(
        flame,
        seq.data,
        Camera(seq.focal, seq.focal, 255.5, 255.5),
        TrackerConfig(),
        fixed_shape=seq.gt["shape"].astype(np.float64),
    )
    np.testing.assert_allclose(out.params["shape"], seq.gt["shape"], atol=1e-6)
    assert out.lmk_rmse_px[0] < 3.0
    assert np.isnan(out.lmk_accel_px).all()


def test_chunked_jacobians_give_the_same_fit(flame, oracle):
    seq = make_sequence(oracle, 12, seed=7)
    cam = Camera(seq.focal, seq.focal, 255.5, 255.5)
    a = fit_sequence(flame, seq.data, cam, TrackerConfig())
    b = fit_sequence(flame, seq.data, cam, TrackerConfig(gn_chunk=5))
    np.testing.assert_allclose(a.lmk_px, b.lmk_px, atol=1e-2)


def test_canonical_arrays_reproduce_landmarks(flame, oracle):
    seq = make_sequence(oracle, 8, seed=6)
    out = fit_sequence(flame, seq.data, Camera(seq.focal, seq.focal, 255.5, 255.5), TrackerConfig())
    track = tracking_arrays(out, seq.data, "flame2020")
    np.testing.assert_allclose(landmarks_px(flame, track), out.lmk_px, atol=1e-2)


@pytest.mark.parametrize("fx", [0.0, -10.0])
def test_bad_focal(fx):
    with pytest.raises(BadConfigError, match="positive"):
        camera_intrinsics_orig(np.array([512, 512]), fx, fx, None, None)


def test_dense_mediapipe_term(full_flame_assets, oracle):
    import dataclasses

    cfg = TrackerConfig()
    cfg.w.dense = 1.0
    flame = build_flame(full_flame_assets, FlameConfig(n_shape=50, n_expr=30), dense=True)
    seq = make_sequence(oracle, 8, seed=8)
    verts, _ = oracle.draw({k: v.astype(np.float64) for k, v in seq.gt.items()})
    dense = project_px(oracle.mediapipe_points(verts), seq.focal, 255.5)
    data = dataclasses.replace(seq.data, dense_px=dense, dense_w=np.ones(dense.shape[:2]))
    out = fit_sequence(flame, data, Camera(seq.focal, seq.focal, 255.5, 255.5), cfg)
    assert np.nanmean(out.lmk_rmse_px) < 3.0
    assert out.phases[1].terms["dense"] < out.phases[0].terms["dense"]
