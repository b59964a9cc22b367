"""FLAME layer: rest pose, joints, subset landmark path against the full mesh (values and grads)."""

from __future__ import annotations

import pytest
import torch

from prep.errors import BadConfigError
from prep.models.flame import FlameModel
from prep.models.flame_io import (
    load_flame_model,
    load_landmark_embedding,
    load_mediapipe_embedding,
)


def _model(assets, n_shape, n_expr, mp=True):
    data = load_flame_model(assets["flame2020"])
    emb = load_landmark_embedding(assets["flame_lmk_embedding_eyes"])
    mpe = load_mediapipe_embedding(assets["flame_mediapipe_embedding"]) if mp else None
    return FlameModel(data, n_shape, n_expr, emb, mpe, dtype=torch.float64)


def _params(B, ns, ne, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)

    def r(*s, k=1.0):
        return (k * torch.randn(*s, generator=g, dtype=torch.float64)).requires_grad_()

    return dict(
        shape=r(ns),
        expr=r(B, ne),
        global_pose=r(B, 3, k=scale),
        neck_pose=r(B, 3, k=0.1),
        jaw_pose=r(B, 3, k=0.1),
        eyes_pose=r(B, 6, k=0.1),
        transl=r(B, 3, k=0.1),
    )


def test_rest_pose_is_template(tiny_flame_assets):
    m = _model(tiny_flame_assets, 10, 5)
    z = {k: torch.zeros_like(v.detach()) for k, v in _params(2, 10, 5).items()}
    out = m(**z)
    torch.testing.assert_close(out.vertices, m.v_template.expand(2, -1, -1))
    torch.testing.assert_close(out.joints, m.J_template.expand(2, -1, -1))


def test_global_rotation_rotates_about_root(tiny_flame_assets):
    m = _model(tiny_flame_assets, 10, 5)
    z = {k: torch.zeros_like(v.detach()) for k, v in _params(1, 10, 5).items()}
    z["global_pose"] = torch.tensor([[0.0, 0.5, 0.0]], dtype=torch.float64)
    out = m(**z)
    root = m.J_template[0]
    d0 = (m.v_template - root).norm(dim=-1)
    d1 = (out.vertices[0] - root).norm(dim=-1)
    torch.testing.assert_close(d0, d1)


@pytest.mark.parametrize("which", ["tiny", "full"])
def test_subset_matches_full_forward_and_grad(which, request):
    assets = request.getfixturevalue(f"{which}_flame_assets")
    ns, ne = (20, 10) if which == "tiny" else (100, 50)
    m = _model(assets, ns, ne)
    p = _params(5, ns, ne)
    full = m(**p)
    lf, mf = m.landmarks_from_vertices(full.vertices, p["global_pose"], p["neck_pose"])
    ls, ms, _ = m.landmarks(**p, with_mediapipe=True)
    torch.testing.assert_close(ls, lf, atol=1e-12, rtol=0)
    torch.testing.assert_close(ms, mf, atol=1e-12, rtol=0)
    w = torch.randn_like(lf)
    gf = torch.autograd.grad((lf * w).sum() + mf.sum(), list(p.values()))
    gs = torch.autograd.grad((ls * w).sum() + ms.sum(), list(p.values()))
    for a, b in zip(gf, gs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    assert m.lmk_vertex_idx.numel() < m.n_vertices


def test_n_shape_too_large(tiny_flame_assets):
    data = load_flame_model(tiny_flame_assets["flame2020"])
    with pytest.raises(BadConfigError, match="n_shape=301 but the model has 300"):
        FlameModel(data, 301, 10)
    with pytest.raises(BadConfigError, match="n_expr"):
        FlameModel(data, 10, 101)


def test_eyelids(tmp_path):
    from tests.fixtures.synthetic_flame import write_tiny_assets

    a = write_tiny_assets(tmp_path, eyelids=True)
    m = _model(a, 10, 5)
    assert m.has_eyelids
    p = {k: torch.zeros_like(v.detach()) for k, v in _params(1, 10, 5).items()}
    base = m(**p).vertices
    lid = m(**p, eyelids=torch.tensor([[1.0, 0.0]], dtype=torch.float64)).vertices
    assert (lid - base).abs().max() > 1e-4
