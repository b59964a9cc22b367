"""SH shading, normals, texture sampling, and a render of the synthetic FLAME head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prep.models.flame import FlameModel
from prep.models.flame_io import load_flame_model, load_landmark_embedding
from prep.render import (
    fit_sh,
    rasterize,
    render_mesh,
    sample_texture,
    sh_irradiance,
    vertex_normals,
)
from prep.render.raster import camera_to_pixels, world_to_camera
from prep.render.shading import default_sh
from tests.render.shapes import K_of, icosphere
from tests.render.tracked import w2c_flame


def test_sphere_normals_point_outwards():
    v, f = icosphere(2, 1.0, (0, 0, 4))
    n = vertex_normals(v[None], f)[0]
    radial = F.normalize(v - torch.tensor([0, 0, 4.0]).double(), dim=-1)
    assert (n * radial).sum(-1).min() > 0.99


def test_ambient_light_is_unit_irradiance_and_fit_recovers_lighting():
    g = torch.Generator().manual_seed(0)
    n = F.normalize(torch.randn(4000, 3, generator=g, dtype=torch.float64), dim=-1)
    amb = torch.zeros(9, 3, dtype=torch.float64)
    amb[0] = 1.0
    torch.testing.assert_close(sh_irradiance(n, amb), torch.ones(4000, 3, dtype=torch.float64))
    sh = 0.2 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    sh[0] += 1.0
    albedo = torch.tensor([0.8, 0.6, 0.5], dtype=torch.float64)
    colour = albedo * sh_irradiance(n, sh)
    torch.testing.assert_close(fit_sh(n, colour, albedo, ridge=0.0), sh)


def test_default_light_is_brightest_towards_the_light():
    sh = default_sh(0.6, to_light=(0.0, 0.0, -1.0)).double()
    n = torch.tensor([[0.0, 0, -1], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    irr = sh_irradiance(n, sh)[:, 0]
    assert irr[0].item() == pytest.approx(1.0, abs=1e-6)
    assert irr[1].item() == pytest.approx(0.4, abs=1e-6)
    assert irr[2].item() == pytest.approx(0.7, abs=1e-6)


def test_texture_lookup_on_a_screen_aligned_quad():
    z, f, size = 2.0, 50.0, 40
    half = 0.6
    v = torch.tensor(
        [[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    uv_v = torch.tensor([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=torch.float64)  # image top = v 1
    uv_corners = uv_v[faces]
    tex = torch.zeros(3, 8, 8, dtype=torch.float64)
    tex[0, :, :4] = 1.0  # left half red
    tex[2, :, 4:] = 1.0  # right half blue
    frags = rasterize(v[None], faces, K_of(f, size), (size, size))
    img = sample_texture(tex, uv_corners, frags)[0]
    assert img[20, 8].tolist() == pytest.approx([1, 0, 0])
    assert img[20, 31].tolist() == pytest.approx([0, 0, 1])
    assert img[0, 0].tolist() == [0, 0, 0]  # outside the quad


def test_flame_render_matches_projected_landmarks(full_flame_assets):
    model = FlameModel(
        load_flame_model(full_flame_assets["flame2020"]),
        20,
        10,
        load_landmark_embedding(full_flame_assets["flame_lmk_embedding"]),
    )
    z3 = torch.zeros(1, 3)
    pose = dict(
        global_pose=torch.tensor([[0.05, 0.25, 0.0]]),
        neck_pose=z3,
        jaw_pose=z3,
        eyes_pose=torch.zeros(1, 6),
    )
    g = torch.Generator().manual_seed(0)
    shape, expr = 0.5 * torch.randn(20, generator=g), 0.5 * torch.randn(1, 10, generator=g)
    transl = torch.tensor([[0.0, 0.0, -0.7]])
    verts = model(shape, expr, transl=transl, **pose).vertices
    lmk, _, _ = model.landmarks(shape, expr, transl=transl, **pose)
    w2c = torch.from_numpy(w2c_flame()).float()
    size = 256
    K = torch.tensor([[520.0, 0, 127.5], [0, 520, 127.5], [0, 0, 1]])
    out = render_mesh(verts, model.faces, w2c, K, (size, size))
    lmk_cam = world_to_camera(lmk, w2c)
    px = camera_to_pixels(lmk_cam, K)[0].round().long()
    inner = slice(27, 68)  # nose, eyes, mouth: never on the outline (brow tips can be, when yawed)
    ij = px[inner]
    assert out.mask[0, ij[:, 1], ij[:, 0]].all()
    depth = out.frags.depth[0, ij[:, 1], ij[:, 0]]
    err_mm = (depth - lmk_cam[0, inner, 2]).abs() * 1000
    assert np.median(err_mm.numpy()) < 3.0
    assert (err_mm < 10).float().mean() > 0.9
    # The head fills a sensible part of the frame and the shading is lit, not black.
    assert 0.15 < out.mask.float().mean() < 0.8
    assert out.rgb[out.mask].mean() > 0.3
