"""Pinhole camera: projection, intrinsics through crops, convention helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prep.models import camera as cam


def test_project_centre_and_depth():
    K = cam.make_K(500.0, 500.0, 255.5, 255.5, dtype=torch.float64)
    pts = torch.tensor([[0.0, 0.0, 2.0], [0.1, -0.2, 1.0]], dtype=torch.float64)
    xy, z = cam.project(pts, K)
    np.testing.assert_allclose(xy.numpy(), [[255.5, 255.5], [305.5, 155.5]])
    np.testing.assert_allclose(z.numpy(), [2.0, 1.0])
    back = cam.unproject(xy, z, K)
    np.testing.assert_allclose(back.numpy(), pts.numpy(), atol=1e-12)


def test_project_batched_w2c():
    T = 4
    K = cam.make_K(torch.full((T,), 800.0), torch.full((T,), 800.0), 100.0, 120.0)
    w2c = torch.eye(4).repeat(T, 1, 1)
    w2c[:, 2, 3] = torch.arange(1, T + 1, dtype=torch.float32)
    pts = torch.tensor([[[0.1, 0.0, 0.0]]]).repeat(T, 1, 1)
    xy, z = cam.project(pts, K, w2c)
    assert xy.shape == (T, 1, 2)
    np.testing.assert_allclose(xy[:, 0, 0].numpy(), 100 + 80 / np.arange(1, T + 1), rtol=1e-6)


def test_crop_intrinsics_match_projection_then_crop():
    # crop at (100, 50) then scale by 0.5: projecting with the converted K equals mapping pixels
    A = np.array([[0.5, 0, -50.0], [0, 0.5, -25.0], [0, 0, 1]])
    Kc = cam.crop_intrinsics(1000.0, 1000.0, 640.0, 360.0, A)
    p = np.array([0.05, -0.03, 1.2])
    Ko = np.array([[1000.0, 0, 640], [0, 1000, 360], [0, 0, 1]])
    uv_o = Ko @ p
    uv_o = uv_o / uv_o[2]
    uv_c = Kc @ p
    uv_c = uv_c / uv_c[2]
    np.testing.assert_allclose(A @ uv_o, uv_c)
    with pytest.raises(ValueError, match="positive"):
        cam.crop_intrinsics(0.0, 1000.0, 640.0, 360.0, A)


def test_opengl_round_trip_and_invert():
    c2w = cam.invert_rigid(cam.look_at_w2c(np.array([0.3, 0.1, 2.0]), np.zeros(3)))
    gl = cam.opencv_to_opengl_c2w(c2w)
    np.testing.assert_allclose(cam.opengl_to_opencv_c2w(gl), c2w, atol=1e-12)
    np.testing.assert_allclose(cam.invert_rigid(c2w) @ c2w, np.eye(4), atol=1e-12)


def test_look_at_axes():
    w2c = cam.look_at_w2c(np.array([0.0, 0.0, 3.0]), np.zeros(3))
    # camera at +z looking at the origin: world +x is image right, world +y is image up (-y cam)
    np.testing.assert_allclose(w2c[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    np.testing.assert_allclose(w2c[:3, 3], [0, 0, 3.0], atol=1e-12)


def test_fov_focal_inverse():
    f = cam.focal_from_fov(30.0, 512)
    assert cam.fov_from_focal(f, 512) == pytest.approx(30.0)
    K = cam.default_K((480, 640), 30.0)
    assert K[0, 2] == pytest.approx(319.5) and K[1, 2] == pytest.approx(239.5)
