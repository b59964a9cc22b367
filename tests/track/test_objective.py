"""The tracker's objective is declared once: its Gauss-Newton form equals autograd's.

On a small problem (tiny FLAME with eyelids and dense points, 4 frames, estimated focal, every
weight non-zero, a phase that scales the iris term) every term of `FlameObjective`:
- has a Gauss-Newton gradient ``J^T W r`` equal to autograd's gradient of its value;
- contributes to the Gauss-Newton matrix exactly ``J^T W J``, with J from autograd of residuals
  written here from the loss's definition (prep/track/objective.py docstring), not taken from
  the objective, and W = 2 w a rho'(|r|^2) of the Charbonnier kernel.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from prep.config.flame import FlameConfig, PhaseConfig, TrackerConfig
from prep.track.flame_data import FlameDataModule
from prep.track.flame_fit import build_flame
from prep.track.flame_jacobian import make_layout
from prep.track.flame_params import ALL_PARAMS, FlameParams, InitValues, project_flame_points
from prep.track.gauss_newton import gn_gradient, normal_equations
from prep.track.objective import TERMS, FlameObjective
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_flame import write_tiny_assets
from tests.fixtures.synthetic_sequence import make_sequence, project_px

T = 4


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    assets = write_tiny_assets(tmp_path_factory.mktemp("flame_eyelids"), seed=1, eyelids=True)
    return assets, FlameOracle.from_assets(assets, 6, 5, dense=True)


def oracle_size_direction(oracle: FlameOracle) -> np.ndarray:
    """``g``: the inner face's relative size change is ``g . shape``, from the oracle's rest
    landmarks: the least-squares scale ``sum d . (t - c) / sum |t - c|^2`` of each unit shape
    coefficient's displacement ``d`` of the 51 inner landmarks (17-67) about their centroid."""
    zero = {
        "expr": np.zeros((1, oracle.n_expr)),
        "global_pose": np.zeros((1, 3)),
        "neck_pose": np.zeros((1, 3)),
        "jaw_pose": np.zeros((1, 3)),
        "eyes_pose": np.zeros((1, 6)),
    }

    def inner(shape):
        return oracle.draw({**zero, "shape": shape})[1][0, 17:68]

    t = inner(np.zeros(oracle.n_shape))
    t = t - t.mean(0)
    d = [inner(e) - inner(np.zeros(oracle.n_shape)) for e in np.eye(oracle.n_shape)]
    return np.array([(di * t).sum() / (t * t).sum() for di in d])


@pytest.fixture(scope="module")
def problem(oracle):
    torch.set_num_threads(1)
    assets, oracle = oracle
    flame = build_flame(assets, FlameConfig(n_shape=6, n_expr=5), dense=True, dtype=torch.float64)
    seq = make_sequence(oracle, T, seed=3, size=256, focal=900.0, noise_px=1.5)
    verts, _ = oracle.draw({k: np.asarray(v, np.float64) for k, v in seq.gt.items()})
    dense = project_px(oracle.mediapipe_points(verts), 900.0, 127.5)
    rng = np.random.default_rng(0)
    dense_px = dense + rng.normal(0, 1.5, dense.shape)
    dense_w = rng.uniform(0.2, 1.0, dense.shape[:2])
    data = dataclasses.replace(seq.data, dense_px=dense_px, dense_w=dense_w)
    cfg = TrackerConfig()
    cfg.w.dense = 0.7
    cfg.w.size_prior = 0.5
    cfg.expr_prior_per_size = cfg.expr_smooth_per_size = True
    cfg.charbonnier_eps_px = 2.0
    p = FlameParams(
        T,
        flame.n_shape,
        flame.n_expr,
        True,
        True,
        900.0,
        True,
        1.0,
        127.5,
        127.5,
        dtype=torch.float64,
    )
    keys = [f.name for f in dataclasses.fields(InitValues)]
    off = {k: seq.gt[k] + rng.normal(0, 0.02, np.shape(seq.gt[k])) for k in keys}
    p.load(InitValues(**off))
    p.set_value("eyelids", torch.as_tensor(rng.normal(0, 0.3, (T, 2))))
    obj = FlameObjective(flame, p, cfg, False, FlameDataModule(data, torch.float64).batch)
    obj.phase = PhaseConfig("eyes", ["all"], 1, iris_scale=3.0)
    obj.oracle_size_g = torch.as_tensor(oracle_size_direction(oracle))  # the truth, not ours
    return obj


def test_every_term_is_present(problem):
    assert [t.name for t in problem.terms] == [t.name for t in TERMS]


def _autograd_gradient(obj, lay, name):
    us = obj.params.groups(lay.names)
    total = obj.evaluate()[name]
    grads = dict(
        zip(us, torch.autograd.grad(total, list(us.values()), allow_unused=True), strict=True)
    )
    g = {n: (x if x is not None else torch.zeros_like(us[n])) for n, x in grads.items()}
    gf = torch.cat([g[n].reshape(T, -1) for n, _, _ in lay.frame], 1)
    gs = torch.cat([g[n].reshape(-1) for n, _, _ in lay.shared])
    return gf, gs


@pytest.mark.parametrize("name", [t.name for t in TERMS])
def test_gauss_newton_gradient_equals_autograd(problem, name):
    lay = make_layout(problem.params, ["all"])
    term = next(t for t in problem.terms if t.name == name)
    gf, gs = gn_gradient(problem, lay, [term])
    af, as_ = _autograd_gradient(problem, lay, name)
    assert af.abs().max() + as_.abs().max() > 0  # the term moves something
    torch.testing.assert_close(gf, af, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(gs, as_, rtol=1e-8, atol=1e-12)


def _values(obj, lay, x) -> dict[str, torch.Tensor]:
    """The parameter values with the layout's columns taken from the flat vector `x`."""
    v = {n: obj.params.value(n).detach() for n in ALL_PARAMS}
    Dp = lay.n_frame
    for n, i, d in lay.frame:
        v[n] = x[: T * Dp].reshape(T, Dp)[:, i : i + d]
    for n, i, d in lay.shared:
        v[n] = x[T * Dp + i : T * Dp + i + d].reshape(v[n].shape)
    return v


def _flat(obj, lay) -> torch.Tensor:
    p = obj.params
    pf = torch.cat([p.value(n).detach().reshape(T, -1) for n, _, _ in lay.frame], 1)
    ps = torch.cat([p.value(n).detach().reshape(-1) for n, _, _ in lay.shared])
    return torch.cat([pf.reshape(-1), ps])


def _residuals_and_weights(obj, lay, x):
    """Every residual of the loss and its Gauss-Newton weight, written from the definition."""
    cfg, b = obj.cfg, obj.batch
    v = _values(obj, lay, x)
    lmk, mp, _ = obj.flame.landmarks(
        v["shape"],
        v["expr"],
        v["global_pose"],
        v["neck_pose"],
        v["jaw_pose"],
        v["eyes_pose"],
        transl=v["transl"],
        eyelids=v["eyelids"],
        with_mediapipe=True,
    )
    f = v["focal"].exp()[0]
    one = torch.tensor([1.0, 1.0, 0.0], dtype=f.dtype)
    K = f * torch.diag(one) + torch.tensor(
        [[0, 0, 127.5], [0, 0, 127.5], [0, 0, 1.0]], dtype=f.dtype
    )
    pts = project_flame_points(torch.cat([lmk, mp], 1), K, b["orig_to_crop"])
    half = torch.tensor([128.0, 128.0], dtype=f.dtype)  # 256 x 256 crop
    eps = cfg.charbonnier_eps_px / 128.0
    lw = b["lmk_w"].clone()
    lw[:, :17] *= cfg.w.contour
    sets = [
        (slice(0, 68), b["lmk_px"], lw, cfg.w.lmk),
        (slice(68, 70), b["iris_px"], b["iris_w"], cfg.w.iris * 3.0),
        (slice(70, None), b["dense_px"], b["dense_w"], cfg.w.dense),
    ]
    rs, ws, loss = [], [], 0.0
    for rows, obs, w, weight in sets:
        r = (pts[:, rows] - obs) / half
        s = (r.detach() ** 2).sum(-1)
        a = weight * w / (w > 0).sum()
        loss = loss + (a * (torch.sqrt((r**2).sum(-1) + eps**2) - eps)).sum()
        rs.append(r.reshape(-1))
        ws.append((2 * a * 0.5 / torch.sqrt(s + eps**2))[..., None].expand(-1, -1, 2).reshape(-1))
    w = cfg.w
    priors = [
        ("shape", w.shape_prior),
        ("expr", w.expr_prior),
        ("jaw_pose", w.jaw_prior),
        ("neck_pose", w.neck_prior),
        ("eyes_pose", w.eyes_prior),
        ("eyelids", w.eyelids_prior),
    ]
    smooth = [
        (["global_pose", "neck_pose", "jaw_pose"], w.smooth_pose),
        (["expr"], w.smooth_expr),
        (["transl"], w.smooth_transl),
        (["eyes_pose"], w.smooth_eyes),
        (["eyelids"], w.smooth_expr),
    ]
    regs = [(v[n].reshape(-1), c) for n, c in priors]
    # the expression prior over the inner face's relative size, from the oracle's size direction
    k = 1 + obj.oracle_size_g @ v["shape"].reshape(-1)
    regs[1] = (v["expr"].reshape(-1) / k, w.expr_prior)
    for names, c in smooth:  # the expression's differences over the face's size, as its prior
        z = torch.cat([v[n] for n in names], 1)
        regs.append(((z[1:] - z[:-1]).reshape(-1) / (k if names == ["expr"] else 1), c))
    regs.append(((obj.oracle_size_g @ v["shape"].reshape(-1)).reshape(1), w.size_prior))
    for r, c in regs:
        loss = loss + c * (r**2).mean()
        rs.append(r)
        ws.append(torch.full_like(r, 2 * c / r.numel()).detach())
    return torch.cat(rs), torch.cat(ws), loss


def _dense(sysm, lay):
    Dp, Ds = lay.n_frame, lay.n_shared
    H = torch.zeros(T * Dp + Ds, T * Dp + Ds, dtype=torch.float64)
    for t in range(T):
        f = slice(t * Dp, (t + 1) * Dp)
        H[f, f] = sysm.Hff[t]
        H[f, T * Dp :] = sysm.Hfs[t]
        H[T * Dp :, f] = sysm.Hfs[t].T
    H[T * Dp :, T * Dp :] = sysm.Hss
    for idx, c in sysm.smooth:  # the frame chain's Laplacian off the diagonal
        for t in range(T - 1):
            H[t * Dp + idx, (t + 1) * Dp + idx] -= c
            H[(t + 1) * Dp + idx, t * Dp + idx] -= c
    return H


def test_gauss_newton_matrix_is_jtwj_of_autograd_jacobians(problem):
    lay = make_layout(problem.params, ["all"])
    x = _flat(problem, lay)
    r, w, loss = _residuals_and_weights(problem, lay, x)
    # the residuals written here are those of the objective: same loss value
    total = sum(problem.evaluate().values())
    torch.testing.assert_close(loss, total, rtol=1e-10, atol=0)
    J = torch.autograd.functional.jacobian(
        lambda xx: _residuals_and_weights(problem, lay, xx)[0], x
    )
    expected = J.T @ (w[:, None] * J)
    got = _dense(normal_equations(problem, lay, chunk=3), lay)  # chunks of 3 and 1 frames
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["prior/expr", "smooth/expr"])
def test_size_relative_blocks_on_their_own(problem, name):
    """The expression terms measured over the face's size, alone (their shape blocks are too
    small to show beside the point terms): ``J^T W J`` of ``z / k``, z the expression (prior)
    or its frame differences (smoothness), k from the oracle's size direction."""
    lay = make_layout(problem.params, ["all"])
    term = next(t for t in problem.terms if t.name == name)

    def residual(xx):
        v = _values(problem, lay, xx)
        z = v["expr"][1:] - v["expr"][:-1] if name.startswith("smooth") else v["expr"]
        return z.reshape(-1) / (1 + problem.oracle_size_g @ v["shape"].reshape(-1))

    x = _flat(problem, lay)
    r = residual(x)
    J = torch.autograd.functional.jacobian(residual, x)
    c = 2 * problem.weight(term) / r.numel()
    expected = c * J.T @ J
    got = _dense(normal_equations(problem, lay, chunk=3, terms=[term]), lay)
    scale = expected.abs().max()
    torch.testing.assert_close(got / scale, expected / scale, rtol=0, atol=1e-10)
    s = slice(T * lay.n_frame, None)  # the shape block is there and matches on its own
    assert expected[s, s].abs().max() > 1e-6 * scale
    torch.testing.assert_close(got[s, s], expected[s, s], rtol=1e-8, atol=0)
