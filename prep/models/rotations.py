"""Rotation conversions in torch (axis-angle, matrices, quaternions, Euler angles, 6D).

Conventions (used everywhere in `prep`):
- Rotation matrices act on column vectors: ``x' = R @ x``. Batched as ``(..., 3, 3)``.
- Axis-angle is a rotation vector ``(..., 3)``: unit axis times the angle in radians
  (right-handed, counter-clockwise when looking down the axis towards the origin).
- Quaternions are ``(..., 4)`` in (w, x, y, z) order, w >= 0 after `matrix_to_quaternion`.
- Euler angles ``(..., 3)`` in radians with a 3-letter `convention` such as ``"XYZ"``: the matrix
  is the product of the elementary rotations in the order of the letters,
  ``R = R_X(a[0]) @ R_Y(a[1]) @ R_Z(a[2])`` for ``"XYZ"``. Only Tait-Bryan conventions (three
  distinct axes) are supported. Deep3DFaceRecon's BFM angles ``(x, y, z)`` with
  ``R = Rz @ Ry @ Rx`` are ``euler_angles_to_matrix(angles.flip(-1), "ZYX")``.
- The 6D representation is the first two columns of the matrix, ``(..., 6)`` =
  ``[R[:,0], R[:,1]]`` (Zhou et al. 2019), mapped back by Gram-Schmidt.

Every function is differentiable, including at the identity (small angles use Taylor series).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_AXES = {"X": 0, "Y": 1, "Z": 2}


def _skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices of ``v (..., 3)`` -> ``(..., 3, 3)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape + (3,))


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, exact gradient at zero.

    Args:
        axis_angle: ``(..., 3)`` rotation vectors, radians.

    Returns:
        ``(..., 3, 3)`` rotation matrices.
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a_big = torch.sin(theta) / theta
    b_big = (1 - torch.cos(theta)) / theta2_safe
    a = torch.where(small, 1 - theta2 / 6 + theta2 * theta2 / 120, a_big)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2 * theta2 / 720, b_big)
    k = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * k + b * (k @ k)


def _sqrt_positive(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, torch.sqrt(torch.clamp(x, min=1e-30)), torch.zeros_like(x))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` (w, x, y, z), w >= 0.

    Picks, per matrix, the best-conditioned of the four candidate formulas.
    """
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    q_abs = _sqrt_positive(
        torch.stack(
            [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22],
            dim=-1,
        )
    )
    m21_12 = m[..., 2, 1] - m[..., 1, 2]
    m02_20 = m[..., 0, 2] - m[..., 2, 0]
    m10_01 = m[..., 1, 0] - m[..., 0, 1]
    m10p01 = m[..., 1, 0] + m[..., 0, 1]
    m02p20 = m[..., 0, 2] + m[..., 2, 0]
    m21p12 = m[..., 2, 1] + m[..., 1, 2]
    cands = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m21_12, m02_20, m10_01], -1),
            torch.stack([m21_12, q_abs[..., 1] ** 2, m10p01, m02p20], -1),
            torch.stack([m02_20, m10p01, q_abs[..., 2] ** 2, m21p12], -1),
            torch.stack([m10_01, m02p20, m21p12, q_abs[..., 3] ** 2], -1),
        ],
        dim=-2,
    )  # (..., 4, 4): row i is 2*q_abs[i] * q
    cands = cands / (2.0 * q_abs[..., None].clamp(min=0.1))
    best = q_abs.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """Quaternions ``(..., 4)`` (w, x, y, z) -> rotation vectors ``(..., 3)``, angle in [0, pi]."""
    q = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    xyz = q[..., 1:]
    s = xyz.norm(dim=-1, keepdim=True)
    half = torch.atan2(s, q[..., :1])
    small = s < 1e-6
    s_safe = torch.where(small, torch.ones_like(s), s)
    # angle / sin(angle/2), with its Taylor series near zero
    scale = torch.where(small, 2.0 / q[..., :1].clamp(min=1e-12), 2 * half / s_safe)
    return xyz * scale


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Quaternions ``(..., 4)`` (w, x, y, z; normalised here) -> ``(..., 3, 3)``."""
    w, x, y, z = F.normalize(quaternion, dim=-1).unbind(-1)
    m = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return m.reshape(quaternion.shape[:-1] + (3, 3))


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> rotation vectors ``(..., 3)``, angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def _elementary(axis: str, angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    o, i = torch.zeros_like(angle), torch.ones_like(angle)
    if axis == "X":
        flat = (i, o, o, o, c, -s, o, s, c)
    elif axis == "Y":
        flat = (c, o, s, o, i, o, -s, o, c)
    else:
        flat = (c, -s, o, s, c, o, o, o, i)
    return torch.stack(flat, -1).reshape(angle.shape + (3, 3))


def _check_convention(convention: str) -> tuple[int, int, int]:
    if len(convention) != 3 or set(convention) != {"X", "Y", "Z"}:
        raise ValueError(f"Euler convention must be a permutation of 'XYZ', got {convention!r}")
    return tuple(_AXES[c] for c in convention)  # type: ignore[return-value]


def euler_angles_to_matrix(angles: torch.Tensor, convention: str = "XYZ") -> torch.Tensor:
    """Euler angles ``(..., 3)`` (radians) -> ``(..., 3, 3)``; see the module docstring."""
    _check_convention(convention)
    mats = [_elementary(c, a) for c, a in zip(convention, angles.unbind(-1), strict=True)]
    return mats[0] @ mats[1] @ mats[2]


def matrix_to_euler_angles(matrix: torch.Tensor, convention: str = "XYZ") -> torch.Tensor:
    """Inverse of `euler_angles_to_matrix`; the middle angle is in [-pi/2, pi/2]."""
    i, j, k = _check_convention(convention)
    parity = 1.0 if (j - i) % 3 == 1 else -1.0  # even permutation of (0, 1, 2)
    m = matrix
    a1 = torch.asin((parity * m[..., i, k]).clamp(-1.0, 1.0))
    a0 = torch.atan2(-parity * m[..., j, k], m[..., k, k])
    a2 = torch.atan2(-parity * m[..., i, j], m[..., i, i])
    return torch.stack([a0, a1, a2], -1)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """6D rotations ``(..., 6)`` (first two matrix columns) -> ``(..., 3, 3)`` by Gram-Schmidt."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., 6)``: the first two columns, concatenated."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def axis_angle_to_rotation_6d(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(..., 3)`` -> 6D ``(..., 6)``."""
    return matrix_to_rotation_6d(axis_angle_to_matrix(axis_angle))


def rotation_6d_to_axis_angle(d6: torch.Tensor) -> torch.Tensor:
    """6D ``(..., 6)`` -> rotation vectors ``(..., 3)``."""
    return matrix_to_axis_angle(rotation_6d_to_matrix(d6))


def rotation_angle_deg(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotation matrices ``(..., 3, 3)``, in degrees ``(...)``."""
    rel = r_a.transpose(-1, -2) @ r_b
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))
