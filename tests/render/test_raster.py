"""Rasteriser: analytic coverage and depth, perspective-correct interpolation, gradients,
bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prep.models.rotations import axis_angle_to_matrix
from prep.render import interpolate, rasterize, render_mesh, soft_silhouette
from prep.render.raster import camera_to_pixels
from tests.render.shapes import K_of, cube, icosphere


def _ray_box_depth(K: np.ndarray, R: np.ndarray, centre: np.ndarray, half: float, size: int):
    """Analytic z-depth of the rays through every pixel centre hitting a rotated box; nan = miss."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1)
    o_box = R.T @ (-centre)
    d_box = d @ R  # R^T d for every ray
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o_box) / d_box
        t2 = (half - o_box) / d_box
    tmin = np.minimum(t1, t2).max(-1)
    tmax = np.maximum(t1, t2).min(-1)
    return np.where((tmax >= tmin) & (tmin > 0), tmin, np.nan)  # ray z component is 1: t = depth


def test_rotated_cube_matches_ray_casting():
    size, half = 96, 0.5
    centre = np.array([0.1, -0.05, 3.0])
    R = axis_angle_to_matrix(torch.tensor([0.4, 0.6, 0.1], dtype=torch.float64)).numpy()
    v, f = cube(half, (0, 0, 0))
    v = v @ torch.from_numpy(R).T + torch.from_numpy(centre)
    K = K_of(110.0, size)
    frags = rasterize(v[None], f, K, (size, size))
    ref = _ray_box_depth(K.numpy(), R, centre, half, size)
    hit = ~np.isnan(ref)
    # Compare away from the outline, where a pixel centre may sit exactly on an edge.
    pad = np.pad(hit, 1, mode="edge")
    stable = np.ones_like(hit)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            stable &= pad[dy : dy + size, dx : dx + size] == hit
    mask = frags.mask[0].numpy()
    assert hit.sum() > 2000
    np.testing.assert_array_equal(mask[stable], hit[stable])
    depth = frags.depth[0].detach().numpy()
    np.testing.assert_allclose(depth[stable & hit], ref[stable & hit], atol=1e-9)


def test_sphere_coverage_and_depth():
    size, f, r, d = 129, 200.0, 1.0, 4.0
    v, faces = icosphere(4, r, (0, 0, d))
    frags = rasterize(v[None], faces, K_of(f, size), (size, size))
    R_px = f * r / math.sqrt(d * d - r * r)  # projected outline of a sphere on the optical axis
    assert frags.mask.sum().item() == pytest.approx(math.pi * R_px**2, rel=0.015)
    assert frags.depth[0, 64, 64].item() == pytest.approx(d - r, abs=2e-3)
    assert frags.tri_id[~frags.mask].eq(-1).all()


def test_interpolation_is_perspective_correct():
    size = 64
    v, faces = icosphere(2, 1.0, (0.2, 0.1, 3.0))
    K = K_of(70.0, size)
    frags = rasterize(v[None], faces, K, (size, size))
    pts = interpolate(v, faces, frags)[frags.mask]  # surface points under each pixel centre
    px = camera_to_pixels(pts[None], K)[0]
    ys, xs = frags.mask[0].nonzero(as_tuple=True)
    torch.testing.assert_close(px, torch.stack([xs, ys], -1).double(), atol=1e-8, rtol=0)
    torch.testing.assert_close(pts[:, 2], frags.depth[frags.mask], atol=1e-10, rtol=0)


def test_backface_culling_and_winding():
    v = torch.tensor([[[0.0, 0, 2], [1, 0, 2], [0, 1, 2]]])
    K = torch.tensor([[100.0, 0, 10], [0, 100, 10], [0, 0, 1]])  # corners land on pixel centres
    away = torch.tensor([[0, 1, 2]])  # normal +z: facing away from the camera
    assert rasterize(v, away, K, (64, 64)).mask.sum() == 0
    assert rasterize(v, away, K, (64, 64), cull_backfaces=False).mask.sum() > 0
    # Legs of 50 px: pixel centres with i + j <= 50 in the triangle's corner, edges included.
    assert rasterize(v, away[:, [0, 2, 1]], K, (64, 64)).mask.sum() == 51 * 52 // 2


def test_nearer_triangle_wins_and_batches_are_independent():
    tri = torch.tensor([[-1.0, -1, 0], [-1, 1, 0], [1, 0, 0]])
    near, far = tri + torch.tensor([0, 0, 2.0]), tri + torch.tensor([0.3, 0, 3.0])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    v = torch.cat([near, far])[None].repeat(2, 1, 1)
    v[1, :3, 2] += 5.0  # in frame 1 the first triangle is behind
    frags = rasterize(v, faces, K_of(40.0, 48), (48, 48))
    both = (frags.tri_id[0] >= 0) & (frags.tri_id[1] >= 0)
    assert frags.tri_id[0][both].eq(0).float().mean() > 0.6
    assert frags.tri_id[1][frags.tri_id[1] >= 0].eq(1).float().mean() > 0.5
    d = frags.depth[0][frags.tri_id[0] == 0]
    assert torch.allclose(d, torch.full_like(d, 2.0))


def _small_scene():
    v = torch.tensor(
        [[-0.5, -0.4, 2.0], [-0.45, 0.5, 2.2], [0.5, -0.1, 1.9], [0.6, 0.6, 2.5]],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [2, 1, 3]])
    return v, faces, K_of(14.0, 14)


def test_interpolation_gradients_match_finite_differences():
    v, faces, K = _small_scene()
    colours = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def fn(verts, cols):
        frags = rasterize(verts[None], faces, K, (14, 14))
        return torch.cat([interpolate(cols, faces, frags).flatten(), frags.depth.flatten()])

    assert torch.autograd.gradcheck(
        fn, (v.clone().requires_grad_(), colours.requires_grad_()), eps=1e-7, atol=1e-5
    )


def test_soft_silhouette_gradients_match_finite_differences():
    v, faces, K = _small_scene()

    def fn(verts):
        return soft_silhouette(verts[None], faces, K, (14, 14), sigma_px=1.5).flatten()

    assert torch.autograd.gradcheck(fn, (v.clone().requires_grad_(),), eps=1e-7, atol=1e-5)


def test_soft_silhouette_grows_with_the_outline():
    # A screen-facing square of half-side h pixels: d(sum of coverage)/dh = perimeter = 8h.
    size, f, z = 64, 100.0, 2.0
    h_px = torch.tensor(12.0, dtype=torch.float64, requires_grad=True)
    corners = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
    xy = corners * h_px * z / f + 0.013
    v = torch.cat([xy, torch.full((4, 1), z, dtype=torch.float64)], 1)
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    sil = soft_silhouette(v[None], faces, K_of(f, size), (size, size), sigma_px=1.0)
    sil.sum().backward()
    assert h_px.grad.item() == pytest.approx(8 * 12.0, rel=0.05)
    assert sil.sum().item() == pytest.approx(24.0**2, rel=0.05)
    assert sil[0, 32, 32].item() == 1.0 and sil[0, 2, 2].item() == 0.0


def _grads_finite(verts, faces, K, size=32):
    verts = verts.clone().requires_grad_(True)
    out = render_mesh(
        verts[None], faces, torch.eye(4, dtype=verts.dtype), K, (size, size), soft=True
    )
    loss = out.rgb.sum() + out.silhouette.sum() + out.frags.depth.sum()
    loss.backward()
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.silhouette).all()
    assert torch.isfinite(verts.grad).all()
    return out, verts.grad


def test_bad_geometry_never_crashes_or_gives_nan():
    v, faces = icosphere(1, 0.5, (0, 0, 2))
    K = K_of(40.0, 32)
    bad = v.clone()
    bad[0] = float("nan")  # a NaN parameter reaching a vertex
    bad[1] = torch.tensor([0.1, 0.1, -0.5], dtype=v.dtype)  # behind the camera
    bad[2] = bad[3]  # degenerate triangles
    out, grad = _grads_finite(bad, faces, K)
    assert out.mask.sum() > 100
    assert grad[0].abs().sum() == 0
    # Fully degenerate and fully off-screen meshes give empty, finite renders.
    out, grad = _grads_finite(torch.zeros_like(v) + torch.tensor([0, 0, 2.0]).double(), faces, K)
    assert out.mask.sum() == 0
    out, grad = _grads_finite(v + torch.tensor([50.0, 0, 0]).double(), faces, K)
    assert out.mask.sum() == 0 and grad.abs().sum() == 0
    # All vertices behind the camera.
    out, _ = _grads_finite(v * torch.tensor([1, 1, -1]).double(), faces, K)
    assert out.mask.sum() == 0


def test_chunking_does_not_change_the_result():
    v, faces = icosphere(3, 1.0, (0.1, 0, 3.5))
    K = K_of(60.0, 48)
    a = rasterize(v[None], faces, K, (48, 48))
    b = rasterize(v[None], faces, K, (48, 48), chunk=257)
    assert torch.equal(a.tri_id, b.tri_id)
    torch.testing.assert_close(a.bary, b.bary)


@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    v, faces = icosphere(4, 1.0, (0.1, -0.1, 3.5))
    v = v.float()
    K = K_of(120.0, 128).float()
    res = []
    for dev in ("cpu", "cuda"):
        vv = v.to(dev).requires_grad_(True)
        out = render_mesh(
            vv[None].repeat(2, 1, 1), faces.to(dev), torch.eye(4), K.to(dev), (128, 128), soft=True
        )
        (out.rgb.sum() + out.silhouette.sum()).backward()
        res.append(
            (out.mask.cpu(), out.rgb.detach().cpu(), out.silhouette.detach().cpu(), vv.grad.cpu())
        )
    (m0, c0, s0, g0), (m1, c1, s1, g1) = res
    assert (m0 != m1).float().mean() < 1e-3
    both = m0 & m1
    torch.testing.assert_close(c0[both], c1[both], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s0, s1, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(g0, g1, atol=1e-2, rtol=1e-2)
