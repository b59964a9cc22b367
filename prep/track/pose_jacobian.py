"""Closed-form derivatives of the posed FLAME landmarks w.r.t. the joint rotations.

A vertex is ``x = sum_j w_j (G_j (u - J_j) + P_j) + transl`` with world rotations ``G_j``, rest
joints ``J_j``, posed joints ``P_j`` and ``u`` the shaped, pose-corrected rest vertex
(`prep.models.flame.FlameModel.forward`). A right perturbation ``R_k -> R_k exp([e]x)`` of joint
k's local rotation turns every joint of k's subtree about the posed joint ``P_k`` by the world
axis ``G_k e``, so ``dx/de = (G_k e) x S_k`` with ``S_k = sum_{j in sub(k)} w_j (y_j - P_k)``,
``y_j = G_j (u - J_j) + P_j``. For k >= 1 the pose correctives move u as well, by
``posedirs[:, block k] . vec(R_k [e]x)``, carried to the posed mesh by ``sum_j w_j G_j``. The
axis-angle derivative is ``dx/domega = dx/de . J_r(omega)`` with SO(3)'s right Jacobian.

Landmarks are barycentric combinations of vertices (contour bins held fixed), so the sums over
vertices and joints are taken in landmark space on model-only bases (`landmark_bases`),
vectorised over frames and points.
"""

from __future__ import annotations

import torch

from prep.models.lbs import pose_features, rigid_transforms
from prep.models.rotations import axis_angle_to_matrix
from prep.track.landmark_bases import FrameBases


def _cross_columns(a: torch.Tensor, b: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Matrix whose column i is ``a_i x b``, for the columns ``a_i`` of ``a (..., 3, 3)`` and
    ``b (..., 3)``; the result's row axis is `dim` (-2: ``(..., 3, 3)``). Written out: linalg.cross
    on broadcast operands is several times slower here."""
    a0, a1, a2 = a[..., 0, :], a[..., 1, :], a[..., 2, :]
    b0, b1, b2 = b[..., 0, None], b[..., 1, None], b[..., 2, None]
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim)


def so3_right_jacobian(omega: torch.Tensor) -> torch.Tensor:
    """SO(3) right Jacobian ``J_r`` of axis-angle ``omega (..., 3)``: ``(..., 3, 3)`` with
    ``R(omega + d) = R(omega) exp([J_r d]x)`` to first order.

    ``J_r = I - (1 - cos t) / t^2 [w]x + (t - sin t) / t^3 [w]x^2``; series below ``t = 1e-4``
    (the threshold of `axis_angle_to_matrix`).
    """
    t2 = (omega * omega).sum(-1)[..., None, None]
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = t2s.sqrt()
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - torch.cos(t)) / t2s)
    c = torch.where(small, 1 / 6 - t2 / 120 + t2 * t2 / 5040, (t - torch.sin(t)) / (t2s * t))
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand(*omega.shape[:-1], 3, 3)
    w_x = _cross_columns(eye, -omega)  # column i: e_i x (-w) = w x e_i, i.e. [w]x
    return eye - b * w_x + c * (w_x @ w_x)


def _subtree_matrix(parents: list[int], dtype, device) -> torch.Tensor:
    """``(J, J)`` with entry ``[k, j] = 1`` when joint j is k or one of its descendants."""
    n = len(parents)
    m = torch.eye(n, dtype=dtype, device=device)
    for j in range(n):  # parents come before children
        p = parents[j]
        while p >= 0:
            m[p, j] = 1.0
            p = parents[p]
    return m


@torch.no_grad()
def pose_jacobian(flame, v: dict, fb: FrameBases) -> torch.Tensor:
    """Exact derivative of the posed 3D landmarks w.r.t. each joint's axis-angle.

    Args:
        flame: the `FlameModel` (with a landmark embedding).
        v: parameter values for T frames (shape, expr, eyelids, poses).
        fb: the landmark bases of these frames.

    Returns:
        (T, N, 3, 5, 3): ``[t, n, :, k, i]`` = d landmark n / d axis-angle component i of joint k
        (global, neck, jaw, left eye, right eye); N = 68|70 (+ M dense points).
    """
    eyelids = v["eyelids"] if v["eyelids"].numel() else None
    c = flame.coeffs(v["shape"], v["expr"], eyelids)  # (T, K)
    e = v["eyes_pose"]
    aa = torch.stack([v["global_pose"], v["neck_pose"], v["jaw_pose"], e[:, :3], e[:, 3:]], 1)
    R = axis_angle_to_matrix(aa)  # (T, 5, 3, 3) local
    joints_rest = flame.J_template + torch.einsum("jck,tk->tjc", flame.J_dirs, c)
    P, A = rigid_transforms(R, joints_rest, flame.parents)
    G = A[..., :3]  # (T, 5, 3, 3) world rotations; A[..., 3] = P_j - G_j J_j
    T, J = G.shape[:2]
    # U[t, n, j] = sum_v bary_v w_vj u_v, u = template + dirs c + posedirs (R - I): the landmark's
    # rest position as skinned to joint j
    x = torch.cat([c, torch.ones_like(c[:, :1]), pose_features(R)], 1)  # (T, K + 1 + 36)
    U = fb.combine(x)  # (T, N, 5, 3)
    W = fb.W  # (T, N, 5)
    # Y_j = G_j U_j + W_j (P_j - G_j J_j); S_k = sum over k's subtree of Y_j - W_j P_k
    Y = (G[:, None] * U[..., None, :]).sum(-1) + W[..., None] * A[:, None, :, :, 3]
    sub = _subtree_matrix(flame.parents, c.dtype, c.device)
    S = (Y.mT @ sub.T).mT - (W @ sub.T)[..., None] * P[:, None]  # (T, N, 5, 3)
    del U, Y
    Jr = so3_right_jacobian(aa)  # (T, 5, 3, 3)
    # dL[t, n, :, k, i] = (G_k J_r e_i) x S_k: (T, N, 3, 5, 3)
    dL = _cross_columns((G @ Jr)[:, None], S, dim=-3)
    # pose correctives of joints k >= 1: d u = posedirs_k . vec(R_k [J_r e_i]x), turned by G_j
    npf = 9 * (J - 1)
    pd = fb.rotate(G, "pose")  # (T, 3, N, 9 (J - 1))
    eye = torch.eye(3, dtype=c.dtype, device=c.device)
    rows, axes = torch.broadcast_tensors(R[:, 1:, None], eye[:, None, :])
    # row a of R_k [e_i]x is (row a of R_k) x e_i; flattened row-major like `pose_features`
    Re = torch.linalg.cross(rows, axes, dim=-1).reshape(T, J - 1, 3, 9)  # [t, k, i, (a, b)]
    E = Re.mT @ Jr[:, 1:]  # (T, J - 1, 9, 3)
    # block-diagonal over the joints: one product for all of them, no transposed copy of pd
    E = torch.einsum("tkfi,kl->tkfli", E, torch.eye(J - 1, dtype=c.dtype, device=c.device))
    N = S.shape[1]
    corr = pd.reshape(T, 3 * N, npf) @ E.reshape(T, npf, 3 * (J - 1))  # (T, 3 N, 3 (J - 1))
    dL[..., 1:, :] += corr.reshape(T, 3, N, J - 1, 3).transpose(1, 2)
    return dL
