"""Model-only per-landmark bases of the FLAME tracker's closed-form Jacobians.

A landmark is a barycentric combination of mesh vertices and a vertex is skinned by its joints'
transforms, so the Jacobians sum per-vertex arrays (blendshapes, pose correctives) weighted by
barycentric times skinning weights. Those sums depend only on the model: they are taken once
per model, here, and combined per frame with the joints' world rotations (`FrameBases`).
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


class FrameBases:
    """The `POSED` landmark bases of T frames, shared by the coefficient and pose Jacobians.

    The contour's bases depend on each frame's yaw bin. Gathering them per frame would copy
    ``(T, 17, 5, 3, K + 37)`` floats per chunk, the costliest step of the Jacobian (memory
    bound), so frames are grouped by bin instead and each group multiplies its bin's basis: a
    loop over the bins present (at most 79), not over frames.

    Args:
        flame: the `FlameModel`. bins: (T,) contour yaw bins. with_mp: also the dense points.

    Attributes:
        W: (T, N, 5) skinning weights per landmark. n_dirs: K, the blendshape columns.
    """

    def __init__(self, flame, bins: torch.Tensor, with_mp: bool):
        self.key = (str(flame.dirs.device), flame.dirs.dtype, with_mp, POSED)
        self.cache = flame.__dict__.setdefault("_coefficient_bases", {})
        g_dyn, w_dyn, self.st, w_st = landmark_bases(flame, with_mp, POSED)
        self.dyn = g_dyn  # (79, 17, 5, 3, F) per bin
        self.W = torch.cat([w_dyn[bins], w_st.expand(len(bins), -1, -1)], 1)
        self.n_dirs = flame.dirs.shape[-1]
        self.T = len(bins)
        present, inv = torch.unique(bins, return_inverse=True)
        order = torch.argsort(inv, stable=True)
        counts = torch.bincount(inv, minlength=len(present)).tolist()
        self.groups = list(zip(present.tolist(), torch.split(order, counts), strict=True))

    def columns(self, part: str) -> slice:
        """The basis columns of `part`: "dirs", "rest" (template) or "pose" (correctives)."""
        K = self.n_dirs
        return {"dirs": slice(0, K), "rest": slice(K, K + 1), "pose": slice(K + 1, None)}[part]

    def combine(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_f G_njf x_tf`` per landmark and joint: ``(T, N, 5, 3)`` for ``x (T, F)``."""
        T, F = x.shape
        n_dyn, rest = self.dyn.shape[1], self.dyn.shape[2:4]
        dyn = x.new_empty(T, n_dyn * rest.numel())
        flat = self.dyn.reshape(self.dyn.shape[0], -1, F)
        for b, idx in self.groups:
            dyn[idx] = x[idx] @ flat[b].T
        st = x @ self.st.reshape(-1, F).T
        return torch.cat([dyn.reshape(T, n_dyn, *rest), st.reshape(T, -1, *rest)], 1)

    def rotate(self, R: torch.Tensor, part: str) -> torch.Tensor:
        """``sum_j R_j G_nj`` over the columns of `part`, turned by world rotations
        ``R (T, 5, 3, 3)``: ``(T, 3, N, K')``."""
        dyn, st = self._rotation_layout(part)  # (79, 15, 17 K'), (15, N_s K')
        T, n_dyn, n_st = R.shape[0], self.dyn.shape[1], self.st.shape[0]
        K = st.shape[1] // n_st
        Rf = R.permute(0, 2, 1, 3).reshape(T, 3, -1)  # (T, 3, 5*3): [a, (j, b)]
        out = R.new_empty(T, 3, n_dyn + n_st, K)
        flat = out.view(T, 3, -1)
        for b, idx in self.groups:
            flat[idx, :, : n_dyn * K] = Rf[idx] @ dyn[b]
        # straight into place: a concatenation would copy the (T, 3, N, K') result once more
        torch.mm(Rf.reshape(T * 3, -1), st, out=flat.view(T * 3, -1)[:, n_dyn * K :])
        return out

    def _rotation_layout(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = (*self.key, "rotation", part)
        if key not in self.cache:
            cols = self.columns(part)
            dyn, st = self.dyn[..., cols], self.st[..., cols]
            jb = dyn.shape[2] * dyn.shape[3]  # (joint, axis) pairs
            self.cache[key] = (
                dyn.permute(0, 2, 3, 1, 4).reshape(dyn.shape[0], jb, -1).contiguous(),
                st.permute(1, 2, 0, 3).reshape(jb, -1).contiguous(),
            )
        return self.cache[key]


def bary_sums(flame, bins: torch.Tensor, with_mp: bool) -> torch.Tensor:
    """(T, N) sums of each landmark's barycentric weights (1 up to the embedding's rounding)."""
    parts = [flame.dynamic_bary[bins].sum(-1), flame.static_bary.sum(-1).expand(len(bins), -1)]
    if with_mp and flame.mediapipe is not None:
        parts.append(flame.mp_bary.sum(-1).expand(len(bins), -1))
    return torch.cat(parts, 1)
