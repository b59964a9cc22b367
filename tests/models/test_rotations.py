"""Rotation conversions: float64 round trips, gradients at identity, Euler conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from prep.models import rotations as rot


@pytest.fixture
def rotvecs() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(
        torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1
    )
    angle = torch.rand(200, 1, generator=g, dtype=torch.float64) * (math.pi - 1e-3)
    angle[:5] = torch.tensor([[0.0], [1e-9], [1e-5], [math.pi - 1e-6], [1.0]], dtype=torch.float64)
    return axis * angle


def test_axis_angle_matches_scipy(rotvecs):
    ours = rot.axis_angle_to_matrix(rotvecs).numpy()
    ref = Rotation.from_rotvec(rotvecs.numpy()).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_axis_angle_round_trip(rotvecs):
    back = rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(rotvecs))
    R1 = rot.axis_angle_to_matrix(back)
    R0 = rot.axis_angle_to_matrix(rotvecs)
    np.testing.assert_allclose(R1.numpy(), R0.numpy(), atol=1e-9)
    ok = rotvecs.norm(dim=-1) < math.pi - 1e-3
    np.testing.assert_allclose(back[ok].numpy(), rotvecs[ok].numpy(), atol=1e-9)


def test_quaternion_round_trip(rotvecs):
    R = rot.axis_angle_to_matrix(rotvecs)
    q = rot.matrix_to_quaternion(R)
    ref = Rotation.from_matrix(R.numpy()).as_quat()[:, [3, 0, 1, 2]]
    ref = np.where(ref[:, :1] < 0, -ref, ref)
    np.testing.assert_allclose(q.numpy(), ref, atol=1e-9)
    np.testing.assert_allclose(rot.quaternion_to_matrix(q).numpy(), R.numpy(), atol=1e-12)


@pytest.mark.parametrize("conv", ["XYZ", "ZYX", "YXZ", "XZY", "YZX", "ZXY"])
def test_euler_round_trip_and_scipy(conv):
    g = torch.Generator().manual_seed(1)
    ang = (
        (torch.rand(100, 3, generator=g, dtype=torch.float64) - 0.5)
        * 2
        * torch.tensor([math.pi, math.pi / 2 - 1e-3, math.pi], dtype=torch.float64)
    )
    R = rot.euler_angles_to_matrix(ang, conv)
    ref = Rotation.from_euler(conv, ang.numpy()).as_matrix()  # upper case = intrinsic = our order
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(rot.matrix_to_euler_angles(R, conv).numpy(), ang.numpy(), atol=1e-9)


def test_euler_rejects_proper_euler():
    with pytest.raises(ValueError, match="permutation"):
        rot.euler_angles_to_matrix(torch.zeros(3), "XYX")


def test_6d_round_trip(rotvecs):
    R = rot.axis_angle_to_matrix(rotvecs)
    d6 = rot.matrix_to_rotation_6d(R)
    np.testing.assert_allclose(rot.rotation_6d_to_matrix(d6).numpy(), R.numpy(), atol=1e-12)
    noisy = d6 * 3.0  # scale-invariant
    np.testing.assert_allclose(rot.rotation_6d_to_matrix(noisy).numpy(), R.numpy(), atol=1e-12)


def test_gradient_at_identity_is_exact():
    r = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (r,))
    r2 = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (r2,))
    # d R / d r at 0 applied to e_z is the skew generator
    R = rot.axis_angle_to_matrix(r)
    (R[1, 0]).backward()
    assert r.grad[2].item() == pytest.approx(1.0)


def test_rotation_angle_deg():
    a = rot.axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64))
    b = rot.axis_angle_to_matrix(torch.tensor([0.0, math.radians(30), 0.0], dtype=torch.float64))
    assert rot.rotation_angle_deg(a, b).item() == pytest.approx(30.0, abs=1e-6)
