"""Gauss-Newton (Levenberg-Marquardt) steps for the FLAME tracker, vectorised over frames.

The tracker's objective is a sum over frames of robust point terms plus priors and temporal
smoothness. Per-frame parameters only touch their own frame's residuals, so the Gauss-Newton
matrix is block-tridiagonal (per-frame blocks, smoothness couples neighbours) with an arrow of
shared parameters (shape, shared translation, focal). Per-frame Jacobians come from one batched
``vmap(jacfwd)`` over frames; the step is solved matrix-free by preconditioned conjugate
gradients (`block_pcg`: a Cholesky factor per frame and one for the shared block as the
preconditioner); the step length is chosen by backtracking on the exact objective. The
gradient is the exact autograd gradient of the objective, so any term without a Jacobian here
(an extra photometric term) still steers the step. Typical fits converge in 5-15 iterations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.func import vmap

from prep.models.flame import contour_bins
from prep.track.block_pcg import solve_frames_shared
from prep.track.flame_params import FLIP_YZ, project_flame_points

log = logging.getLogger(__name__)

PER_FRAME_ORDER = ("expr", "global_pose", "neck_pose", "jaw_pose", "eyes_pose", "eyelids")
SMOOTH_GROUPS = {  # smoothness weight name -> parameters whose columns it couples
    "smooth_pose": ("global_pose", "neck_pose", "jaw_pose"),
    "smooth_expr": ("expr",),
    "smooth_transl": ("transl",),
    "smooth_eyes": ("eyes_pose",),
}
PRIORS = {
    "expr": "expr_prior",
    "jaw_pose": "jaw_prior",
    "neck_pose": "neck_prior",
    "eyes_pose": "eyes_prior",
    "eyelids": "eyelids_prior",
    "shape": "shape_prior",
}


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


def make_layout(params, names: list[str], fixed_shape: bool) -> Layout:
    groups = params.groups(names)
    if fixed_shape:
        groups.pop("shape", None)
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


class GaussNewton:
    """Runs damped Gauss-Newton iterations on a `FlameTracker`'s current phase."""

    def __init__(self, tracker, batch: dict, layout: Layout):
        self.tr, self.b, self.lay = tracker, batch, layout
        self.p = tracker.params
        self.T = self.p.n_frames
        self.lam = 1e-3
        self.sl = slice(0, self.T)  # frames the Jacobian methods work on (chunks bound memory)
        self.chunk = 512

    # ---- vectors <-> parameters ---------------------------------------------------------------
    def get(self) -> tuple[torch.Tensor, torch.Tensor]:
        pf = [self.p.value(n).detach().reshape(self.T, -1) for n, _, _ in self.lay.frame]
        sh = [self.p.value(n).detach().reshape(-1) for n, _, _ in self.lay.shared]
        dt = self.p.u_shape.dtype
        return (
            torch.cat(pf, 1) if pf else torch.zeros(self.T, 0, dtype=dt),
            torch.cat(sh) if sh else torch.zeros(0, dtype=dt),
        )

    def set(self, pf: torch.Tensor, sh: torch.Tensor) -> None:
        for n, i, d in self.lay.frame:
            self.p.set_value(n, pf[:, i : i + d].reshape(self.p.value(n).shape))
        for n, i, d in self.lay.shared:
            self.p.set_value(n, sh[i : i + d].reshape(self.p.value(n).shape))

    # ---- objective, gradient, Jacobian ----------------------------------------------------------
    def objective(self) -> torch.Tensor:
        with torch.no_grad():
            return sum(self.tr.loss_terms(self.b).values())

    def gradient(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        groups = self.p.groups([n for n, _, _ in self.lay.frame + self.lay.shared])
        for u in self.p.parameters():
            u.requires_grad_(False)
        for u in groups.values():
            u.requires_grad_(True)
        total = sum(self.tr.loss_terms(self.b).values())
        grads = dict(zip(groups, torch.autograd.grad(total, list(groups.values())), strict=True))
        scale = {n: getattr(self.p, f"scale_{n}") for n in groups}  # d/dvalue = d/du / scale
        gf = [(grads[n] / scale[n]).reshape(self.T, -1) for n, _, _ in self.lay.frame]
        gs = [(grads[n] / scale[n]).reshape(-1) for n, _, _ in self.lay.shared]
        dt = total.dtype
        return (
            torch.cat(gf, 1) if gf else torch.zeros(self.T, 0, dtype=dt),
            torch.cat(gs) if gs else torch.zeros(0, dtype=dt),
            float(total.detach()),
        )

    def _values(self) -> dict[str, torch.Tensor]:
        p = self.p
        v = {n: p.value(n).detach() for n in ("shape", *PER_FRAME_ORDER, "transl", "focal")}
        if v["transl"].shape[0] == 1:
            v["transl"] = v["transl"].expand(self.T, 3).clone()
        return v

    def _points(self, v: dict[str, torch.Tensor], bins: torch.Tensor) -> torch.Tensor:
        """FLAME-space points ``(T, N, 3)`` the data terms use: 68+2 landmarks (+ dense)."""
        lmk, mp, _ = self.tr.flame.landmarks(
            v["shape"],
            v["expr"],
            v["global_pose"],
            v["neck_pose"],
            v["jaw_pose"],
            v["eyes_pose"],
            transl=v["transl"],
            eyelids=v["eyelids"] if v["eyelids"].numel() else None,
            bins=bins,
            with_mediapipe=self.tr.use_dense,
        )
        return lmk if mp is None else torch.cat([lmk, mp], 1)

    def _residuals(self, v: dict[str, torch.Tensor], bins: torch.Tensor) -> torch.Tensor:
        """Normalised 2D residuals ``(T, R)`` for parameter values `v` (landmarks, iris, dense)."""
        pts = self._points(v, bins)
        px = project_flame_points(pts, self.p.K_orig(v["focal"]), self.b["orig_to_crop"][self.sl])
        obs, scale = self._observations()
        return ((px - obs) / scale).reshape(px.shape[0], -1)

    def jacobians(self, sl: slice | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residuals (t, R), per-frame Jacobian (t, R, Dp), shared Jacobian (t, R, Ds).

        Args:
            sl: frames to evaluate (all by default); the result has t = their count.

        Coefficient columns (shape, expression, eyelids) are analytic (`coefficient_jacobian`);
        pose, translation and focal columns come from forward-mode derivatives, one batched jvp
        per parameter dimension over all frames at once.
        """
        self.sl = sl if sl is not None else slice(0, self.T)
        v = self._values()
        v = {k: (x[self.sl] if k not in ("shape", "focal") else x) for k, x in v.items()}
        with torch.no_grad():
            bins = contour_bins(v["global_pose"], v["neck_pose"])
            e = self._residuals(v, bins)
        T, R = e.shape
        dt = e.dtype
        jf = torch.zeros(T, R, self.lay.n_frame, dtype=dt)
        js = torch.zeros(T, R, self.lay.n_shared, dtype=dt)
        coef_names = {"shape", "expr", "eyelids"}
        if any(n in coef_names for n, _, _ in self.lay.frame + self.lay.shared):
            Jc = self._coefficient_columns(v, bins)  # (T, R, K)
            ns, ne = self.tr.flame.n_shape, self.tr.flame.n_expr
            cols = {
                "shape": slice(0, ns),
                "expr": slice(ns, ns + ne),
                "eyelids": slice(ns + ne, None),
            }
            for n, i, d in self.lay.frame:
                if n in coef_names:
                    jf[..., i : i + d] = Jc[..., cols[n]]
            for n, i, d in self.lay.shared:
                if n in coef_names:
                    js[..., i : i + d] = Jc[..., cols[n]]
        for target, entries in ((jf, self.lay.frame), (js, self.lay.shared)):
            for n, i, d in entries:
                if n in coef_names:
                    continue
                target[..., i : i + d] = self._jvp_columns(v, bins, n)
        return e, jf, js

    def _jvp_columns(self, v: dict, bins: torch.Tensor, name: str) -> torch.Tensor:
        """(T, R, d) derivatives of the residuals w.r.t. each dimension of parameter `name`."""
        x = v[name]
        d = x.shape[-1]

        def f(xx):
            return self._residuals({**v, name: xx}, bins)

        tangents = torch.zeros((d, *x.shape), dtype=x.dtype)
        for k in range(d):  # at most 6 dimensions per parameter
            tangents[k, ..., k] = 1.0
        cols = vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1])(tangents)  # (d, T, R)
        return cols.permute(1, 2, 0)

    def _coefficient_columns(self, v: dict, bins: torch.Tensor) -> torch.Tensor:
        """(T, R, K) derivatives of the residuals w.r.t. [shape, expression, eyelids]."""
        flame = self.tr.flame
        dL = coefficient_jacobian(flame, v, bins, self.tr.use_dense)  # (T, N, 3, K)
        pts_px, P = self._projection_derivative(v, bins)  # (T, N, 2, 3) d crop px / d X_flame
        _, scale = self._observations()
        J = torch.einsum("tnab,tnbk->tnak", P, dL) / scale[None, None, :, None]
        return J.reshape(J.shape[0], -1, J.shape[-1])

    def _projection_derivative(self, v: dict, bins: torch.Tensor):
        with torch.no_grad():
            pts = self._points(v, bins)
        X = pts * pts.new_tensor(FLIP_YZ)
        Kt = self.b["orig_to_crop"][self.sl] @ self.p.K_orig(v["focal"])  # (t, 3, 3)
        h = X @ Kt.transpose(1, 2)  # (T, N, 3)
        uv = h[..., :2] / h[..., 2:3]
        P = (Kt[:, None, :2, :] - uv[..., None] * Kt[:, None, 2:3, :]) / h[..., 2:3, None]
        return uv, P * P.new_tensor(FLIP_YZ)  # chain through x_cam = F x_flame

    def _observations(self):
        b = self.b
        hw = b["image_size"].to(b["lmk_px"].dtype)
        scale = torch.stack([hw[1], hw[0]]) / 2
        parts = [b["lmk_px"]]
        if self.tr.flame.n_landmarks == 70:
            parts.append(b["iris_px"])
        if self.tr.use_dense:
            parts.append(b["dense_px"])
        return torch.cat(parts, 1)[self.sl], scale

    # ---- the linear system -------------------------------------------------------------------
    def residual_weights(self, e: torch.Tensor) -> torch.Tensor:
        """Gauss-Newton weight per residual coordinate ``(T, R)``: ``2 a rho'(|r|^2)``."""
        b, w, c = self.b, self.tr.cfg.w, self.tr.cfg
        lw = b["lmk_w"].clone()
        lw[:, :17] *= w.contour
        a = [w.lmk * lw / (lw > 0).sum().clamp(min=1)]
        if self.tr.flame.n_landmarks == 70:
            iw = b["iris_w"] * (w.iris * self.tr.phase.iris_scale if self.tr.iris_rows.stop else 0)
            a.append(iw / (iw > 0).sum().clamp(min=1))
        if self.tr.use_dense:
            a.append(w.dense * b["dense_w"] / (b["dense_w"] > 0).sum().clamp(min=1))
        a = torch.cat(a, 1)[self.sl]  # (t, N); normalisers count all frames
        r = e.reshape(e.shape[0], -1, 2)
        s2 = (r * r).sum(-1)
        hw = b["image_size"].to(e.dtype)
        eps = c.charbonnier_eps_px / float((torch.stack([hw[1], hw[0]]) / 2).mean())
        drho = 0.5 / torch.sqrt(s2 + eps * eps) if c.loss == "charbonnier" else torch.ones_like(s2)
        return (2 * a * drho).repeat_interleave(2, dim=1)

    def _regulariser_diag(self) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Prior Hessian diagonals (per-frame (Dp,), shared (Ds,)) and smoothness couplings."""
        w, T, p = self.tr.cfg.w, self.T, self.p
        dt = p.u_shape.dtype
        df = torch.zeros(self.lay.n_frame, dtype=dt)
        ds = torch.zeros(self.lay.n_shared, dtype=dt)
        for n, i, d in self.lay.frame:
            if n in PRIORS:
                df[i : i + d] = 2 * getattr(w, PRIORS[n]) / (T * d)
        for n, i, d in self.lay.shared:
            if n == "shape":
                ds[i : i + d] = 2 * w.shape_prior / d
        smooth = []
        groups = dict(SMOOTH_GROUPS)
        groups["smooth_expr_lids"] = ("eyelids",)
        for key, names in groups.items():
            weight = getattr(w, key.replace("_lids", ""))
            cols = [(i, d) for n, i, d in self.lay.frame if n in names]
            width = sum(p.value(n).shape[-1] for n in names if p.value(n).shape[0] == T)
            if cols and T > 1 and weight > 0 and width:
                idx = torch.cat([torch.arange(i, i + d) for i, d in cols])
                smooth.append((idx, 2 * weight / ((T - 1) * width)))
        return df, ds, smooth

    def step(self) -> tuple[float, float]:
        """One damped Gauss-Newton iteration; returns (objective before, after)."""
        gf, gs, f0 = self.gradient()
        Dp, Ds, dt = self.lay.n_frame, self.lay.n_shared, gf.dtype
        Hff = torch.zeros(self.T, Dp, Dp, dtype=dt)
        Hfs = torch.zeros(self.T, Dp, Ds, dtype=dt)
        Hss = torch.zeros(Ds, Ds, dtype=dt)
        for i0 in range(0, self.T, self.chunk):  # frame chunks: memory stays flat in T
            sl = slice(i0, min(i0 + self.chunk, self.T))
            e, jf, js = self.jacobians(sl)
            om = self.residual_weights(e.detach())
            wjf = jf * om[..., None]
            Hff[sl] = wjf.transpose(1, 2) @ jf
            Hfs[sl] = wjf.transpose(1, 2) @ js
            Hss += torch.einsum("trd,tre->de", js * om[..., None], js)
        self.sl = slice(0, self.T)
        df, ds, smooth = self._regulariser_diag()
        lap_diag = torch.zeros(self.T, self.lay.n_frame, dtype=gf.dtype)
        n_nb = torch.full((self.T,), 2.0, dtype=gf.dtype)
        n_nb[0] = n_nb[-1] = 1.0 if self.T > 1 else 0.0
        for idx, c in smooth:
            lap_diag[:, idx] += c * n_nb[:, None]
        eye_f = torch.eye(self.lay.n_frame, dtype=gf.dtype)
        Hff = Hff + torch.diag_embed(df + lap_diag)
        Hss = Hss + torch.diag(ds)
        pf, sh = self.get()
        for _attempt in range(4):
            Af = Hff + self.lam * (torch.diag_embed(Hff.diagonal(dim1=1, dim2=2)) + 1e-9 * eye_f)
            As = Hss + self.lam * (
                torch.diag(Hss.diagonal()) + 1e-9 * torch.eye(len(ds), dtype=gf.dtype)
            )
            xf, xs = solve_frames_shared(Af, Hfs, As, smooth, -gf, -gs)
            for alpha in (1.0, 0.5, 0.25):
                self.set(pf + alpha * xf, sh + alpha * xs)
                f1 = float(self.objective())
                if f1 < f0:
                    self.lam = max(self.lam / 3, 1e-7)
                    return f0, f1
            self.lam *= 10
        self.set(pf, sh)
        return f0, f0

    def run(self, iters: int) -> list[float]:
        """Up to `iters` iterations; stops when the objective stalls. Returns its history."""
        hist = []
        for _ in range(iters):
            f0, f1 = self.step()
            hist.append(f1)
            if f0 - f1 <= 1e-7 * abs(f0) and self.lam > 1e3:
                break
        return hist


def _world_rotations(R_local: torch.Tensor, parents: list[int]) -> torch.Tensor:
    out = [R_local[:, 0]]
    for j in range(1, R_local.shape[1]):
        out.append(out[parents[j]] @ R_local[:, j])
    return torch.stack(out, 1)


@torch.no_grad()
def coefficient_jacobian(flame, v: dict, bins: torch.Tensor, with_mp: bool) -> torch.Tensor:
    """Exact derivative of the posed 3D landmarks w.r.t. the blendshape coefficients.

    Vertices are linear in the coefficients for fixed joint rotations: a vertex moves by
    ``sum_j w_j R_j B_v`` plus the motion of the joints (which are linear in the coefficients
    through the joint regressor) carried down the kinematic chain.

    Returns:
        (T, N, 3, K) with K = n_shape + n_expr (+ 2 eyelids); N = 68|70 (+ M dense points).
    """
    T = v["expr"].shape[0]
    R = _world_rotations(
        flame.rot_mats(v["global_pose"], v["neck_pose"], v["jaw_pose"], v["eyes_pose"]),
        flame.parents,
    )
    Jd = flame.J_dirs  # (5, 3, K)
    dposed = [Jd[0].expand(T, -1, -1)]
    for j in range(1, Jd.shape[0]):  # kinematic chain of 5 joints
        pj = flame.parents[j]
        dposed.append(dposed[pj] + R[:, pj] @ (Jd[j] - Jd[pj]))
    dt_joint = torch.stack(dposed, 1) - R @ Jd  # (T, 5, 3, K)
    vidx = flame.lmk_vertex_idx
    W = flame.lbs_weights[vidx]  # (Vs, 5)
    B = flame.dirs[vidx]  # (Vs, 3, K)
    tri = [flame.dynamic_vlocal[bins], flame.static_vlocal.expand(T, -1, -1)]
    bary = [flame.dynamic_bary[bins], flame.static_bary.expand(T, -1, -1)]
    if with_mp and flame.mediapipe is not None:
        tri.append(flame.mp_vlocal.expand(T, -1, -1))
        bary.append(flame.mp_bary.expand(T, -1, -1))
    tri, bary = torch.cat(tri, 1), torch.cat(bary, 1)  # (T, N, 3)
    Wl = W[tri]  # (T, N, 3, 5)
    Mv = torch.einsum("tnvj,tjab->tnvab", Wl, R)  # blended rotation per landmark vertex
    rot_part = ((Mv * bary[..., None, None]) @ B[tri]).sum(2)  # (T, N, 3, K)
    Wb = (Wl * bary[..., None]).sum(2)  # (T, N, 5)
    joint_part = (Wb @ dt_joint.reshape(T, dt_joint.shape[1], -1)).reshape(rot_part.shape)
    return rot_part + joint_part
