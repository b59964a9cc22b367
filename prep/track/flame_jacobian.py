"""Jacobians of the tracker's point residuals, per frame and for the shared parameters.

The residuals are `FlameObjective.points_px` minus the observations, in normalised crop units
(``(t, 2N)`` for t frames). Each frame's residuals depend on its own per-frame parameters and on
the shared ones (shape, shared translation, focal), so the Jacobian is returned as a per-frame
block ``(t, 2N, Dp)`` and a shared block ``(t, 2N, Ds)``; columns follow a `Layout`.

Coefficient columns (shape, expression, eyelids), pose and translation columns are closed-form
(`coefficient_jacobian`, `prep.track.pose_jacobian`), chained through the projection's
derivative; only the focal length's column comes from a forward-mode derivative (one batched
jvp over all frames at once). Contour bins are held fixed while differentiating.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import vmap

from prep.models.camera import flip_yz, project
from prep.models.flame import contour_bins
from prep.models.flame_tracking import PER_FRAME, landmarks
from prep.track.landmark_bases import FrameBases, bary_sums
from prep.track.pose_jacobian import pose_jacobian

PER_FRAME_ORDER = PER_FRAME
COEFFICIENTS = ("shape", "expr", "eyelids")
# columns of `pose_jacobian`'s (joint, axis) flattening that each pose parameter owns
POSES = {"global_pose": (0, 3), "neck_pose": (3, 6), "jaw_pose": (6, 9), "eyes_pose": (9, 15)}


@dataclass
class Layout:
    """Which parameters a phase moves, and where they sit in the per-frame/shared vectors."""

    frame: list[tuple[str, int, int]]  # (name, start, size) in the per-frame vector
    shared: list[tuple[str, int, int]]  # (name, start, size) in the shared vector

    @property
    def n_frame(self) -> int:
        return sum(s for _, _, s in self.frame)

    @property
    def n_shared(self) -> int:
        return sum(s for _, _, s in self.shared)

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.frame + self.shared]

    def find(self, name: str) -> tuple[bool, int, int] | None:
        """``(shared?, start, size)`` of parameter `name`, or None when it does not move."""
        for shared, entries in ((False, self.frame), (True, self.shared)):
            for n, i, d in entries:
                if n == name:
                    return shared, i, d
        return None

    def columns(self, names: tuple[str, ...]) -> tuple[list, list]:
        """Per-frame and shared ``(start, size)`` column ranges of the parameters `names`."""
        return (
            [(i, d) for n, i, d in self.frame if n in names],
            [(i, d) for n, i, d in self.shared if n in names],
        )


def make_layout(params, names: list[str]) -> Layout:
    """Layout of the parameters `names` (FlameParams names; a shared translation is shared)."""
    groups = params.groups(names)
    per_transl = params.u_transl.shape[0] > 1
    frame, shared, i, j = [], [], 0, 0
    for n in (*PER_FRAME_ORDER, "transl"):
        if n in groups and (n != "transl" or per_transl):
            d = groups[n].shape[1]
            frame.append((n, i, d))
            i += d
    for n in ("shape", "transl", "focal"):
        if n in groups and not (n == "transl" and per_transl):
            d = groups[n].numel()
            shared.append((n, j, d))
            j += d
    return Layout(frame, shared)


def point_jacobians(obj, lay: Layout, sl: slice):
    """Residuals ``(t, 2N)``, per-frame Jacobian ``(t, 2N, Dp)``, shared ``(t, 2N, Ds)``.

    Args:
        obj: the `FlameObjective` (model, parameters, observations).
        lay: the columns.
        sl: the frames to evaluate (t of them).
    """
    v = obj.values(detach=True)
    v = {k: (x if k in ("shape", "focal") else x[sl]) for k, x in v.items()}
    obs = obj.observations(sl)

    def residuals(vv: dict) -> torch.Tensor:
        return ((obj.points_px(vv, sl, bins) - obs) / obj.scale).reshape(obs.shape[0], -1)

    with torch.no_grad():
        bins = contour_bins(v["global_pose"], v["neck_pose"])
        e = residuals(v)
    T, R = e.shape
    jf = e.new_zeros(T, R, lay.n_frame)
    js = e.new_zeros(T, R, lay.n_shared)
    P = _projection_derivative(obj, v, bins, sl)  # (T, N, 2, 3): d crop px / d X_flame
    P /= obj.scale[None, None, :, None]  # residuals are in normalised units
    fb = FrameBases(obj.flame, bins, obj.use_dense)  # model-only: cheap until used
    if any(n in COEFFICIENTS for n in lay.names):
        Jc = _chain(P, coefficient_jacobian(obj.flame, v, fb))  # (T, R, K)
        ns, ne = obj.flame.n_shape, obj.flame.n_expr
        cols = {"shape": slice(0, ns), "expr": slice(ns, ns + ne), "eyelids": slice(ns + ne, None)}
        _place(jf, js, lay, Jc, cols)
        del Jc
    if any(n in POSES for n in lay.names):
        dL = pose_jacobian(obj.flame, v, fb)  # (T, N, 3, 5, 3)
        Jp = _chain(P, dL.reshape(T, dL.shape[1], 3, -1))  # (T, R, 15)
        del dL
        _place(jf, js, lay, Jp, {n: slice(*POSES[n]) for n in POSES})
        del Jp
    del fb
    if "transl" in lay.names:  # a landmark moves with transl by its barycentric weights' sum
        dX = P * bary_sums(obj.flame, bins, obj.use_dense)[..., None, None]
        _place(jf, js, lay, dX.reshape(T, R, 3), {"transl": slice(0, 3)})
    for target, entries in ((jf, lay.frame), (js, lay.shared)):
        for n, i, d in entries:
            if n not in (*COEFFICIENTS, *POSES, "transl"):
                target[..., i : i + d] = _jvp_columns(residuals, v, n)
    return e, jf, js


def _place(jf, js, lay: Layout, cols: torch.Tensor, where: dict[str, slice]) -> None:
    """Copy the columns ``cols[..., where[name]]`` of each parameter in `where` into place."""
    for target, entries in ((jf, lay.frame), (js, lay.shared)):
        for n, i, d in entries:
            if n in where:
                target[..., i : i + d] = cols[..., where[n]]


def _chain(P: torch.Tensor, dX: torch.Tensor) -> torch.Tensor:
    """``(T, N, 2, 3) x (T, N, 3, K)`` -> residual columns ``(T, 2N, K)``."""
    J = P @ dX
    return J.reshape(J.shape[0], -1, J.shape[-1])


def _jvp_columns(f, v: dict, name: str) -> torch.Tensor:
    """(T, R, d) derivatives of ``f(v)`` w.r.t. each dimension of parameter `name`."""
    x = v[name]
    d = x.shape[-1]
    tangents = torch.zeros((d, *x.shape), dtype=x.dtype, device=x.device)
    for k in range(d):  # at most 6 dimensions per parameter
        tangents[k, ..., k] = 1.0
    cols = vmap(lambda t: torch.func.jvp(lambda xx: f({**v, name: xx}), (x,), (t,))[1])(tangents)
    return cols.permute(1, 2, 0)


@torch.no_grad()
def _projection_derivative(obj, v: dict, bins: torch.Tensor, sl: slice) -> torch.Tensor:
    lmk, mp, _ = landmarks(obj.flame, v, bins=bins, with_mediapipe=obj.use_dense)
    pts = lmk if mp is None else torch.cat([lmk, mp], 1)
    X = flip_yz(pts)
    Kt = obj.batch["orig_to_crop"][sl] @ obj.params.K_orig(v["focal"])  # (t, 3, 3)
    uv, z = project(X, Kt)  # Kt's last row is (0, 0, 1): the homogeneous w is the depth z
    P = (Kt[:, None, :2, :] - uv[..., None] * Kt[:, None, 2:3, :]) / z[..., None, None]
    return flip_yz(P)  # chain through x_cam = F x_flame


def _world_rotations(R_local: torch.Tensor, parents: list[int]) -> torch.Tensor:
    out = [R_local[:, 0]]
    for j in range(1, R_local.shape[1]):
        out.append(out[parents[j]] @ R_local[:, j])
    return torch.stack(out, 1)


@torch.no_grad()
def coefficient_jacobian(flame, v: dict, fb: FrameBases) -> torch.Tensor:
    """Exact derivative of the posed 3D landmarks w.r.t. the blendshape coefficients.

    Vertices are linear in the coefficients for fixed joint rotations: a vertex moves by
    ``sum_j w_j R_j B_v`` plus the motion of the joints (which are linear in the coefficients
    through the joint regressor) carried down the kinematic chain. Summed over a landmark's
    barycentric vertices that is ``sum_j R_j G_j`` with the model-only `landmark_bases`.

    Args:
        flame: the `FlameModel`. v: parameter values for T frames.
        fb: the landmark bases of these frames.

    Returns:
        (T, N, 3, K) with K = n_shape + n_expr (+ 2 eyelids); N = 68|70 (+ M dense points).
    """
    T = v["expr"].shape[0]
    R_local = flame.rot_mats(v["global_pose"], v["neck_pose"], v["jaw_pose"], v["eyes_pose"])
    R = _world_rotations(R_local, flame.parents)
    Jd = flame.J_dirs  # (5, 3, K)
    dposed = [Jd[0].expand(T, -1, -1)]
    for j in range(1, Jd.shape[0]):  # kinematic chain of 5 joints
        pj = flame.parents[j]
        dposed.append(dposed[pj] + R[:, pj] @ (Jd[j] - Jd[pj]))
    dt_joint = torch.stack(dposed, 1) - R @ Jd  # (T, 5, 3, K)
    K = fb.n_dirs  # the blendshape columns of the bases
    # the (T, N, 3, K) temporaries dominate the tracker's peak memory: add in place
    rot = fb.rotate(R, "dirs")  # (T, 3, N, K)
    joint_part = (fb.W @ dt_joint.reshape(T, dt_joint.shape[1], -1)).reshape(T, -1, 3, K)
    return joint_part.add_(rot.permute(0, 2, 1, 3))
