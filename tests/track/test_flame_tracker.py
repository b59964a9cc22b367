"""The FLAME tracker under Lightning: one solver step per Lightning step, phases as a callback,
every loss term and the headline metric logged per step, the solvers as torch optimizers, the
Trainer factory, and (on a GPU) a CUDA fit equal to the CPU one."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from prep.config.core import TrainerConfig
from prep.config.flame import FlameConfig, PhaseConfig, TrackerConfig
from prep.errors import BadConfigError
from prep.track.flame_data import FlameDataModule
from prep.track.flame_fit import Camera, build_flame, fit_sequence
from prep.track.flame_params import FlameParams
from prep.track.flame_tracker import FlameTracker
from prep.track.gauss_newton import GaussNewton
from prep.track.lbfgs import LBFGS
from prep.track.trainer import accelerator_devices, make_trainer
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_sequence import make_sequence

PHASES = [
    PhaseConfig("rigid", ["global_pose", "transl"], 3),
    PhaseConfig("joint", ["all"], 4),
    PhaseConfig("eyes", ["eyes_pose"], 2, iris_scale=10.0),
]


@pytest.fixture(scope="module")
def flame(tiny_flame_assets):
    torch.set_num_threads(1)
    return build_flame(tiny_flame_assets, FlameConfig(n_shape=20, n_expr=10), dense=False)


@pytest.fixture(scope="module")
def oracle(tiny_flame_assets):
    """Draws the truth (independent of the FLAME layer under test)."""
    return FlameOracle.from_assets(tiny_flame_assets, 20, 10)


def _rows(path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def test_one_lightning_step_per_solver_step_with_every_term_logged(flame, oracle, tmp_path):
    seq = make_sequence(oracle, 12, seed=2, size=256, focal=900.0, noise_px=1.0)
    logger = CSVLogger(str(tmp_path), name="", version="run")
    out = fit_sequence(
        flame,
        seq.data,
        Camera(900.0, 900.0, 127.5, 127.5),
        TrackerConfig(phases=PHASES),
        logger=logger,
    )
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert len(rows) == sum(p.iters for p in PHASES)  # max_steps = the budgets' sum
    assert [int(r["phase"]) for r in rows] == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert [p.iters for p in out.phases] == [3, 4, 2]
    terms = [k for k in out.phases[-1].terms if k != "total"]
    assert {"lmk", "iris", "prior/shape", "smooth/pose", "smooth/transl"} <= set(terms)
    for r in rows:  # every term, the total and the headline metrics, at every step
        assert all(f"loss/{t}" in r for t in terms)
        assert np.isclose(r["loss/total"], sum(r[f"loss/{t}"] for t in terms), rtol=1e-6)
        assert "metrics/lmk_rmse_px" in r and "metrics/iris_err_px" in r
    for k in range(3):  # damped Gauss-Newton never accepts an increase within a phase
        total = [r["loss/total"] for r in rows if r["phase"] == k]
        assert all(b <= a for a, b in zip(total, total[1:], strict=False))
    # the logged RMSE after the last step is the fit's headline (numpy metric, bridged frames)
    assert rows[-1]["metrics/lmk_rmse_px"] == pytest.approx(out.summary()["lmk_rmse_px"], 1e-4)
    assert rows[-1]["loss/total"] == pytest.approx(out.phases[-1].terms["total"], rel=1e-6)


def test_configure_optimizers_returns_the_solvers(flame, oracle):
    seq = make_sequence(oracle, 3, seed=1, size=256, focal=900.0)
    for solver, kind in (("gn", GaussNewton), ("lbfgs", LBFGS)):
        p = FlameParams(3, 20, 10, False, True, 900.0, False, 1.0, 127.5, 127.5)
        tr = FlameTracker(flame, p, TrackerConfig(solver=solver), FlameDataModule(seq.data).batch)
        opt = tr.configure_optimizers()
        assert isinstance(opt, kind) and isinstance(opt, torch.optim.Optimizer)


def test_a_converged_phase_ends_before_its_budget(flame, oracle, tmp_path):
    """Noise-free float64 data: Gauss-Newton reaches the optimum and the phase hands over."""
    f64 = flame.double()
    try:
        seq = make_sequence(oracle, 6, seed=4, size=256, focal=900.0, noise_px=0.0)
        phases = [PhaseConfig("rigid", ["global_pose", "transl"], 40)]
        logger = CSVLogger(str(tmp_path), name="", version="run")
        out = fit_sequence(
            f64,
            seq.data,
            Camera(900.0, 900.0, 127.5, 127.5),
            TrackerConfig(phases=phases),
            logger=logger,
        )
    finally:
        flame.float()
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert out.phases[0].iters == len(rows) < 40
    assert rows[-1]["solver/damping"] > 1e3


def test_lbfgs_step_is_one_iteration_of_torchs_lbfgs():
    """Twenty one-iteration steps equal torch's L-BFGS taking twenty iterations in one step."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 8, generator=g, dtype=torch.float64)
    A = A @ A.T + 0.1 * torch.eye(8, dtype=torch.float64)

    def run(make, steps):
        x = torch.nn.Parameter(torch.ones(8, dtype=torch.float64))
        opt, calls = make([x]), [0]

        def closure():
            opt.zero_grad()
            loss = ((x[:4] ** 2 - x[4:]) ** 2).sum() + 0.5 * x @ A @ x + x.sum()
            loss.backward()
            calls[0] += 1
            return loss

        for _ in range(steps):
            opt.step(closure)
        return x.detach(), calls[0]

    def torch_lbfgs(p):
        return torch.optim.LBFGS(
            p,
            max_iter=20,
            max_eval=500,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
        )

    ours, n_ours = run(lambda p: LBFGS(p, history_size=20), 20)
    ref, n_ref = run(torch_lbfgs, 1)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)
    assert n_ours <= n_ref  # a step reuses the previous step's last evaluation


def test_trainer_factory():
    assert accelerator_devices(TrainerConfig(), "cpu") == ("cpu", 1)
    assert accelerator_devices(TrainerConfig(), "cuda:1") == ("gpu", [1])
    assert accelerator_devices(TrainerConfig(), "cuda") == ("gpu", 1)
    assert accelerator_devices(TrainerConfig(accelerator="cpu"), "cuda:1") == ("cpu", 1)
    with pytest.raises(BadConfigError, match="one device"):
        accelerator_devices(TrainerConfig(devices=2), "cpu")
    t = make_trainer(TrainerConfig(precision="64-true"), "cpu", max_steps=7)
    assert t.max_steps == 7 and t.log_every_n_steps == 1 and not t.checkpoint_callback


def test_bad_trainer_settings_stop_before_any_stage(compose_cfg):
    """Two devices are refused with the other values; a precision or accelerator that is not a
    choice never composes (tests/config/test_choices.py)."""
    from prep.config.validate import validate_config

    with pytest.raises(BadConfigError, match="one device"):
        validate_config(compose_cfg("trainer.devices=2"))


def test_precision_must_match_the_model(flame, oracle):
    seq = make_sequence(oracle, 3, seed=1, size=256, focal=900.0)
    with pytest.raises(BadConfigError, match="64-true"):
        fit_sequence(
            flame,
            seq.data,
            Camera(900.0, 900.0, 127.5, 127.5),
            TrackerConfig(),
            trainer=TrainerConfig(precision="64-true"),
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["64-true", "32-true"])
def test_cuda_fit_equals_cpu(flame, oracle, precision):
    dt = torch.float64 if precision == "64-true" else torch.float32
    model = flame.double() if dt == torch.float64 else flame
    try:
        seq = make_sequence(oracle, 30, seed=5, size=256, focal=900.0, noise_px=1.0)
        cam, cfg = Camera(900.0, 900.0, 127.5, 127.5), TrackerConfig()
        trainer = TrainerConfig(precision=precision)
        cpu = fit_sequence(model, seq.data, cam, cfg, trainer=trainer)
        gpu = fit_sequence(model, seq.data, cam, cfg, device="cuda", trainer=trainer)
    finally:
        flame.float()
    tol = 1e-6 if dt == torch.float64 else 0.05  # px; float32 sums differ in order on the GPU
    np.testing.assert_allclose(gpu.lmk_px, cpu.lmk_px, atol=tol)
    for k in ("global_pose", "jaw_pose", "expr", "shape"):
        np.testing.assert_allclose(gpu.params[k], cpu.params[k], atol=tol / 10)


def test_a_failed_linear_solve_damps_harder_and_never_steps_to_nan(flame, oracle, monkeypatch):
    """A block that loses definiteness (tiny prior weights in float32) or a non-finite solution
    is retried with 10x the damping; the fit goes on from finite parameters."""
    import prep.track.gauss_newton as gn

    solve, calls = gn.solve_frames_shared, []

    def failing(*args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("not positive-definite")
        xf, xs = solve(*args, **kwargs)
        return (xf * float("nan"), xs) if len(calls) == 2 else (xf, xs)

    monkeypatch.setattr(gn, "solve_frames_shared", failing)
    seq = make_sequence(oracle, 8, seed=3, size=256, focal=900.0, noise_px=1.0)
    phases = [PhaseConfig("rigid", ["global_pose", "transl"], 2)]
    out = fit_sequence(
        flame, seq.data, Camera(900.0, 900.0, 127.5, 127.5), TrackerConfig(phases=phases)
    )
    assert len(calls) >= 3  # two failures, then real steps
    assert all(np.isfinite(v).all() for v in out.params.values())
    assert np.isfinite(out.lmk_rmse_px).all() and np.nanmean(out.lmk_rmse_px) < 20


def test_contour_bins_of_a_non_finite_pose_stay_in_range():
    from prep.models.flame import contour_bins

    pose = torch.tensor([[float("nan"), 0.0, 0.0], [0.0, float("inf"), 0.0], [0.0, 0.3, 0.0]])
    bins = contour_bins(pose, torch.zeros(3, 3))
    assert ((bins >= 0) & (bins <= 78)).all() and bins[2] == 17  # 0.3 rad = 17.2 deg
