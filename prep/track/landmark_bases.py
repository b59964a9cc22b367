"""Model-only per-landmark bases of the FLAME tracker's closed-form Jacobians.

A landmark is a barycentric combination of mesh vertices and a vertex is skinned by its joints'
transforms, so the Jacobians sum per-vertex arrays (blendshapes, pose correctives) weighted by
barycentric times skinning weights. Those sums depend only on the model: they are taken once
per model, here, and combined per frame with the joints' world rotations (`rotate_bases`).
"""

from __future__ import annotations

import torch

DIRS = "dirs"  # the shape, expression (and eyelid) blendshapes
POSED = "posed"  # DIRS, then the template, then the pose correctives (9 (J - 1) columns)


@torch.no_grad()
def landmark_bases(flame, with_mp: bool, basis: str = DIRS):
    """Per landmark and joint, the skinning-weighted basis ``G (.., N, 5, 3, K)`` and skinning
    weights ``Wb (.., N, 5)`` of its barycentric vertices: dynamic contour per yaw bin
    ``(79, 17, ...)``, then the static (+ MediaPipe) points ``(N_s, ...)``. `basis` picks the
    per-vertex array (`DIRS` or `POSED`). They depend only on the model, so they are computed
    once per model, device, dtype and basis."""
    key = (str(flame.dirs.device), flame.dirs.dtype, with_mp, basis)
    cache = flame.__dict__.setdefault("_coefficient_bases", {})
    if key in cache:
        return cache[key]
    vidx = flame.lmk_vertex_idx
    W = flame.lbs_weights[vidx]  # (Vs, 5)
    B = flame.dirs[vidx]  # (Vs, 3, K)
    if basis == POSED:
        B = torch.cat([B, flame.v_template[vidx, :, None], flame.posedirs[vidx]], 2)

    def bases(tri: torch.Tensor, bary: torch.Tensor):  # (..., N, 3) vertex ids and weights
        Wl = W[tri] * bary[..., None]  # (..., N, 3, 5)
        return torch.einsum("...vj,...vbk->...jbk", Wl, B[tri]), Wl.sum(-2)

    tri_s, bary_s = flame.static_vlocal, flame.static_bary
    if with_mp and flame.mediapipe is not None:
        tri_s, bary_s = torch.cat([tri_s, flame.mp_vlocal]), torch.cat([bary_s, flame.mp_bary])
    out = (*bases(flame.dynamic_vlocal, flame.dynamic_bary), *bases(tri_s, bary_s))
    cache[key] = out
    return out


def rotate_bases(R: torch.Tensor, g_dyn: torch.Tensor, g_st: torch.Tensor) -> torch.Tensor:
    """``sum_j R_j G_nj``: the bases turned by the joints' world rotations, ``(T, N, 3, K)``.

    Args:
        R: (T, 5, 3, 3) world rotations.
        g_dyn: (T, 17, 5, 3, K) the contour's bases, already picked by each frame's yaw bin.
        g_st: (N_s, 5, 3, K) the static points' bases.
    """
    T, K = R.shape[0], g_st.shape[-1]
    Rf = R.permute(0, 2, 1, 3).reshape(T, 3, -1)  # (T, 3, 5*3): [a, (j, b)]
    rot_dyn = Rf @ g_dyn.permute(0, 2, 3, 1, 4).reshape(T, Rf.shape[-1], -1)  # (T, 3, 17 K)
    n_st = g_st.shape[0]
    rot_st = Rf.reshape(T * 3, -1) @ g_st.permute(1, 2, 0, 3).reshape(Rf.shape[-1], -1)
    rot = torch.cat([rot_dyn.reshape(T, 3, -1, K), rot_st.reshape(T, 3, n_st, K)], 2)
    return rot.permute(0, 2, 1, 3)


def bary_sums(flame, bins: torch.Tensor, with_mp: bool) -> torch.Tensor:
    """(T, N) sums of each landmark's barycentric weights (1 up to the embedding's rounding)."""
    parts = [flame.dynamic_bary[bins].sum(-1), flame.static_bary.sum(-1).expand(len(bins), -1)]
    if with_mp and flame.mediapipe is not None:
        parts.append(flame.mp_bary.sum(-1).expand(len(bins), -1))
    return torch.cat(parts, 1)
