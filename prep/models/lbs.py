"""Linear blend skinning pieces shared by FLAME-like models (torch, batched over frames).

Conventions: FLAME space is right-handed with y up, z out of the face towards a frontal viewer,
metres. Joint rotations are relative to the parent, as matrices acting on column vectors. Every
function takes an optional vertex subset so losses that need a few hundred vertices never pay
for the full mesh; the subset result equals the full result restricted to those vertices.
"""

from __future__ import annotations

import torch


def blend(base: torch.Tensor, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """``base + dirs @ coeffs``.

    Args:
        base: (V, 3) template (or (B, V, 3)).
        dirs: (V, 3, K) basis.
        coeffs: (B, K) coefficients.

    Returns:
        (B, V, 3).
    """
    V = dirs.shape[0]
    offs = (coeffs @ dirs.reshape(V * 3, -1).T).reshape(coeffs.shape[0], V, 3)
    return base + offs


def pose_features(rot_mats: torch.Tensor) -> torch.Tensor:
    """Pose-corrective features ``(R_j - I)`` of non-root joints: (B, J, 3, 3) -> (B, 9(J-1))."""
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def rigid_transforms(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kinematics.

    Args:
        rot_mats: (B, J, 3, 3) joint rotations relative to the parent.
        joints: (B, J, 3) rest-pose joint locations.
        parents: parent index per joint (-1 for the root), parents before children.

    Returns:
        ``(posed_joints (B, J, 3), A (B, J, 3, 4))`` where ``A[:, j]`` maps a rest-pose point
        skinned to joint j to its posed location (rest joint offset already removed).
    """
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    world_R = [rot_mats[:, 0]]
    world_t = [rel[:, 0]]
    for j in range(1, J):  # loop over the 5 joints of the chain, not over vertices
        p = parents[j]
        world_R.append(world_R[p] @ rot_mats[:, j])
        world_t.append(world_t[p] + (world_R[p] @ rel[:, j, :, None])[..., 0])
    R = torch.stack(world_R, 1)
    t = torch.stack(world_t, 1)
    t_rest_removed = t - (R @ joints[..., None])[..., 0]
    return t, torch.cat([R, t_rest_removed[..., None]], dim=-1)


def skin(v_posed: torch.Tensor, weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning.

    Args:
        v_posed: (B, V, 3) shaped and pose-corrected rest vertices.
        weights: (V, J) skinning weights.
        A: (B, J, 3, 4) joint transforms from `rigid_transforms`.

    Returns:
        (B, V, 3) posed vertices.
    """
    T = torch.matmul(weights, A.reshape(A.shape[0], A.shape[1], 12))  # (B, V, 12)
    T = T.reshape(*T.shape[:2], 3, 4)
    # 3x3 products as broadcast multiply-adds: batched tiny matmuls are several times slower
    return (T[..., :3] * v_posed[..., None, :]).sum(-1) + T[..., 3]
