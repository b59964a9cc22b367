"""Every exported camera sees a world point at the same pixel as the canonical camera."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from prep.export import cameras as cam


def _canonical(rng: np.random.Generator, t: int = 7):
    """Random head-facing OpenCV cameras: rotation near diag(1,-1,-1), head ~0.5-1.5 m away."""
    rot = Rotation.from_rotvec(rng.normal(scale=0.3, size=(t, 3))).as_matrix()
    w2c = np.tile(np.eye(4), (t, 1, 1))
    w2c[:, :3, :3] = cam.CV_TO_GL @ rot
    w2c[:, :3, 3] = rng.normal(scale=0.05, size=(t, 3)) + [0, 0, 1.0]
    K = cam.k_matrix(1100.0, 1080.0, 250.3, 262.7)
    pts = rng.normal(scale=0.1, size=(t, 40, 3))
    return w2c, K, pts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_insta_and_gaussianavatars_project_to_the_same_pixel(seed):
    rng = np.random.default_rng(seed)
    w2c, K, pts = _canonical(rng)
    ref = cam.project_opencv(pts, w2c, K)
    insta = cam.to_insta(w2c, K, (512, 500))
    np.testing.assert_allclose(cam.project_nerf_camera(pts, insta) - 0.5, ref, atol=1e-8)
    ga = cam.to_gaussianavatars(w2c, K, (512, 500))
    np.testing.assert_allclose(cam.project_nerf_camera(pts, ga) - 0.5, ref, atol=1e-8)
    for nc in (insta, ga):
        w2c_back, K_back = cam.nerf_camera_to_canonical(nc)
        np.testing.assert_allclose(w2c_back, w2c, atol=1e-12)
        np.testing.assert_allclose(K_back, K, atol=1e-12)


def test_gaussianavatars_camera_looks_down_minus_z():
    rng = np.random.default_rng(3)
    w2c, K, pts = _canonical(rng, t=1)
    ga = cam.to_gaussianavatars(w2c, K, (512, 512))
    x_cam = pts[0] @ cam.rigid_inverse(ga.c2w)[0, :3, :3].T + cam.rigid_inverse(ga.c2w)[0, :3, 3]
    assert np.all(x_cam[:, 2] < 0)
    insta = cam.to_insta(w2c, K, (512, 512))
    x_cv = (
        pts[0] @ cam.rigid_inverse(insta.c2w)[0, :3, :3].T + cam.rigid_inverse(insta.c2w)[0, :3, 3]
    )
    assert np.all(x_cv[:, 2] > 0)


@pytest.mark.parametrize("seed,per_frame_root", [(0, False), (1, True)])
def test_imavatar_folds_camera_into_flame_pose(seed, per_frame_root):
    rng = np.random.default_rng(seed)
    t = 6
    w2c, K, _ = _canonical(rng, t)
    size = (512, 480)
    root = np.array([0.001, -0.02, -0.015])
    if per_frame_root:  # FLAME's root joint moves with the expression
        root = root + rng.normal(0, 0.002, (t, 3))
    pose = rng.normal(scale=0.2, size=(t, 3))
    transl = rng.normal(scale=0.01, size=(t, 3))
    v_loc = rng.normal(scale=0.1, size=(t, 30, 3))  # vertices posed by every joint but the root

    r_root = Rotation.from_rotvec(pose).as_matrix()
    rj = np.broadcast_to(root, (t, 3))[:, None]
    world = np.einsum("tij,tnj->tni", r_root, v_loc - rj) + rj + transl[:, None]
    ref = cam.project_opencv(world, w2c, K)

    ima = cam.to_imavatar(w2c, K, size, pose, transl, root)
    np.testing.assert_allclose(ima.world_mat[:, :3], np.eye(3))
    assert ima.intrinsics[0] < 0
    r_new = Rotation.from_rotvec(ima.global_pose).as_matrix()
    world_new = np.einsum("tij,tnj->tni", r_new, v_loc - rj) + rj + ima.transl[:, None]
    np.testing.assert_allclose(cam.project_imavatar(world_new, ima, size), ref, atol=1e-7)
    np.testing.assert_allclose(cam.imavatar_K(ima.intrinsics, size), K, atol=1e-9)


def test_imavatar_frontal_camera_keeps_pose_and_has_negative_depth():
    w2c = np.eye(4)[None].copy()
    w2c[0, :3, :3] = cam.CV_TO_GL
    w2c[0, :3, 3] = [0.0, 0.0, 1.0]
    ima = cam.to_imavatar(
        w2c,
        cam.k_matrix(1000, 1000, 256, 256),
        (512, 512),
        np.zeros((1, 3)),
        np.zeros((1, 3)),
        np.zeros(3),
    )
    np.testing.assert_allclose(ima.global_pose, 0, atol=1e-12)
    np.testing.assert_allclose(ima.world_mat[:, 3], [0, 0, -4.0])  # IMAvatar's usual init


@pytest.mark.parametrize("seed", [0, 1])
def test_adnerf_poses_project_like_the_tracker(seed):
    rng = np.random.default_rng(seed)
    t = 5
    euler = rng.normal(scale=0.2, size=(t, 3))
    trans = rng.normal(scale=0.1, size=(t, 3)) + [0, 0, -10.0]
    focal, cx, cy = 1200.0, 256.0, 250.0
    pts = rng.normal(scale=1.0, size=(t, 20, 3))
    # the tracker's own projection: x = R X + t in an OpenGL camera, u = -f x / z + cx
    x = np.einsum("tij,tnj->tni", cam.euler_to_matrix(euler), pts) + trans[:, None]
    tracker = np.stack(
        [-focal * x[..., 0] / x[..., 2] + cx, focal * x[..., 1] / x[..., 2] + cy], -1
    )
    c2w = cam.adnerf_poses(euler, trans)
    np.testing.assert_allclose(
        cam.project_adnerf(pts / 10.0, c2w, focal, cx, cy), tracker, atol=1e-8
    )
    w2c, K = cam.adnerf_to_opencv(euler, trans, focal, cx, cy)
    np.testing.assert_allclose(cam.project_opencv(pts, w2c, K), tracker, atol=1e-8)
    e2, t2 = cam.adnerf_from_poses(c2w)
    np.testing.assert_allclose(cam.euler_to_matrix(e2), cam.euler_to_matrix(euler), atol=1e-10)
    np.testing.assert_allclose(t2, trans, atol=1e-10)


def test_euler_convention_matches_adnerf_euler2rot():
    # AD-NeRF's rot_z concatenates columns (c, -s, 0), (s, c, 0): that is Rz(-psi).
    a, b, c = 0.3, -0.2, 0.5
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), np.sin(c), 0], [-np.sin(c), np.cos(c), 0], [0, 0, 1]])
    np.testing.assert_allclose(
        cam.euler_to_matrix(np.array([[a, b, c]]))[0], rx @ ry @ rz, atol=1e-12
    )


def test_adnerf_matches_the_bfm_model_convention():
    torch = pytest.importorskip("torch")
    bfm = pytest.importorskip("prep.models.bfm")
    euler = np.array([[0.3, -0.2, 0.5], [0.1, 0.4, -0.3]])
    trans = np.array([[0.1, 0.2, -9.0], [0.0, -0.1, -11.0]])
    ours, _ = cam.adnerf_to_opencv(euler, trans, 1000.0, 256.0, 256.0)
    theirs = bfm.adnerf_w2c(torch.tensor(euler), torch.tensor(trans)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
