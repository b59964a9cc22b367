"""Gauss-Newton (Levenberg-Marquardt) for the FLAME tracker, as a `torch.optim.Optimizer`.

The objective (`prep.track.objective`) is a sum over frames of robust point terms plus priors
and temporal smoothness. Per-frame parameters only touch their own frame's residuals, so the
Gauss-Newton matrix ``J^T W J`` is block-tridiagonal (per-frame blocks; smoothness couples
neighbours) with an arrow of shared parameters (shape, shared translation, focal).
`normal_equations` builds it from the objective's terms, point Jacobians in frame chunks
(memory stays flat in the sequence length); `GaussNewton.step` solves the damped system
matrix-free by preconditioned conjugate gradients (`block_pcg`) and backtracks on the exact
objective. The gradient is the closure's autograd gradient, which equals ``J^T W r``
(tests/track/test_objective.py). Typical fits converge in 5-15 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prep.track.block_pcg import solve_frames_shared
from prep.track.flame_jacobian import Layout, make_layout, point_jacobians
from prep.track.objective import FlameObjective, Term


@dataclass
class System:
    """The Gauss-Newton matrix in block-arrow form (see `block_pcg.solve_frames_shared`).

    Attributes:
        Hff: (T, Dp, Dp) per-frame blocks (their diagonal holds the smoothness diagonal).
        Hfs: (T, Dp, Ds) frame-shared coupling. Hss: (Ds, Ds) shared block.
        smooth: (per-frame column indices, weight c) per smoothness term; the frame chain's
            Laplacian off the diagonal is ``-c`` between neighbours.
    """

    Hff: torch.Tensor
    Hfs: torch.Tensor
    Hss: torch.Tensor
    smooth: list[tuple[torch.Tensor, float]]


def _frame_columns(lay: Layout, names, device) -> torch.Tensor | None:
    cols, _ = lay.columns(names)
    if not cols:
        return None
    return torch.cat([torch.arange(i, i + d, device=device) for i, d in cols])


def normal_equations(
    obj: FlameObjective, lay: Layout, chunk: int = 512, terms: list[Term] | None = None
) -> System:
    """``J^T W J`` of the objective's `terms` (all by default) over the columns of `lay`."""
    p, T = obj.params, obj.params.n_frames
    dt, dev = p.u_shape.dtype, p.u_shape.device
    Dp, Ds = lay.n_frame, lay.n_shared
    Hff = torch.zeros(T, Dp, Dp, dtype=dt, device=dev)
    Hfs = torch.zeros(T, Dp, Ds, dtype=dt, device=dev)
    Hss = torch.zeros(Ds, Ds, dtype=dt, device=dev)
    terms = obj.terms if terms is None else terms
    if any(t.kind == "points" for t in terms):
        for i0 in range(0, T, chunk):  # frame chunks: memory stays flat in T
            sl = slice(i0, min(i0 + chunk, T))
            e, jf, js = point_jacobians(obj, lay, sl)
            om = obj.point_weights(e, sl, terms)
            wjf = jf * om[..., None]
            Hff[sl] = wjf.transpose(1, 2) @ jf
            Hfs[sl] = wjf.transpose(1, 2) @ js
            # one (Ds, t R) x (t R, Ds) product (einsum over t and r was 2.5x slower)
            js2 = js.reshape(om.numel(), Ds)
            Hss += (js2 * om.reshape(-1, 1)).T @ js2
            del e, jf, js, js2, om, wjf  # else they live on while the next chunk is built
    n_nb = torch.full((T,), 2.0, dtype=dt, device=dev)  # neighbours of each frame in the chain
    n_nb[0] = n_nb[-1] = 1.0 if T > 1 else 0.0
    smooth: list[tuple[torch.Tensor, float]] = []
    for t, c in obj.regulariser_terms(terms):
        idx = _frame_columns(lay, t.params, dev)
        if t.kind == "prior":
            _, shared = lay.columns(t.params)
            if idx is not None:
                Hff[:, idx, idx] += c
            for i, d in shared:
                k = torch.arange(i, i + d, device=dev)
                Hss[k, k] += c
        elif t.relative:
            _size_relative_block(obj, lay, t, c, Hff, Hfs, Hss, n_nb, smooth)
        elif t.kind == "size":  # a rank-one prior on the shape columns: c g g^T
            _, shared = lay.columns(t.params)
            for i, d in shared:
                g = obj.size_direction.to(dt)
                Hss[i : i + d, i : i + d] += c * torch.outer(g, g)
        elif idx is not None and c != 0:
            Hff[:, idx, idx] += c * n_nb[:, None]
            smooth.append((idx, c))
    return System(Hff, Hfs, Hss, smooth)


def _size_relative_block(obj, lay: Layout, t: Term, c: float, Hff, Hfs, Hss, n_nb, smooth):
    """``J^T W J`` of a term over the face scale, ``r = z / k`` with ``k = 1 + g . shape`` and z
    the values x (``relative``) or their frame differences ``D x`` (``relative_smooth``).

    On the frame columns: ``c / k^2`` times the identity or the chain's Laplacian ``D^T D``.
    When k follows the shape (`FlameObjective.per_size`), ``dr/dshape = -z g^T / k^2`` adds
    ``c |z|^2 g g^T / k^4`` to the shape block and ``-c (J^T z) g^T / k^3`` to the coupling
    (``J^T z``: x, or ``D^T D x``).
    """
    v = obj.values(detach=True)
    k = float(obj.face_scale(v, t))
    x = torch.cat([v[n] for n in t.params], 1).to(Hff.dtype)  # (T, D) per-frame values
    idx = _frame_columns(lay, t.params, Hff.device)
    if idx is not None and c != 0:
        Hff[:, idx, idx] += c / k**2 * (n_nb[:, None] if t.smooth else 1.0)
        if t.smooth:
            smooth.append((idx, c / k**2))
    shared = lay.find("shape")
    if not obj.per_size(t) or shared is None:
        return
    z = x[1:] - x[:-1] if t.smooth else x
    g = obj.size_direction.to(Hff.dtype)
    s = torch.arange(shared[1], shared[1] + shared[2])
    Hss[s[:, None], s] += c * float((z * z).sum()) / k**4 * torch.outer(g, g)
    if idx is not None:
        jtz = _chain_laplacian(x) if t.smooth else x
        Hfs[:, idx[:, None], s] += -c / k**3 * jtz[..., None] * g


def _chain_laplacian(x: torch.Tensor) -> torch.Tensor:
    """``D^T D x`` over the frame chain (D: consecutive differences), ``(T, D)``."""
    dx = x[1:] - x[:-1]
    out = torch.zeros_like(x)
    out[:-1] -= dx
    out[1:] += dx
    return out


def gn_gradient(obj: FlameObjective, lay: Layout, terms: list[Term] | None = None):
    """``J^T W r`` of `terms` (all by default): per-frame ``(T, Dp)`` and shared ``(Ds,)``.

    The solver takes the autograd gradient instead; this one exists to show they agree.
    """
    T = obj.params.n_frames
    terms = obj.terms if terms is None else terms
    e, jf, js = point_jacobians(obj, lay, slice(0, T))
    wr = obj.point_weights(e, slice(0, T), terms) * e
    gf = (jf * wr[..., None]).sum(1)
    gs = (js * wr[..., None]).sum((0, 1))
    v = obj.values(detach=True)
    for t, c in obj.regulariser_terms(terms):
        for n in t.params:
            where = lay.find(n)
            if where is None:
                continue
            shared, i, d = where
            x = v[n].reshape(-1) if shared else v[n]
            if t.kind == "size":
                g = obj.size_direction.to(x.dtype)
                x = g * (g @ x)
            if t.smooth:
                x = _chain_laplacian(x)
            if t.relative:
                x = x / obj.face_scale(v, t) ** 2
            (gs if shared else gf)[..., i : i + d] += c * x
        at = lay.find("shape")
        if obj.per_size(t) and at is not None:
            # d(z / k)/dshape = -z g / k^2, z: the values (relative) or their differences
            z = torch.cat([v[n] for n in t.params], 1)
            z = z[1:] - z[:-1] if t.smooth else z
            k = obj.face_scale(v, t)
            gs[at[1] : at[1] + at[2]] -= c * (z * z).sum() / k**3 * obj.size_direction.to(z.dtype)
    return gf, gs


class GaussNewton(torch.optim.Optimizer):
    """Levenberg-Marquardt steps on a `FlameObjective`; one `step(closure)` = one damped step.

    The parameters it moves are those of the objective's `FlameParams` that require grad (the
    phase sets them). The closure returns the objective and fills the gradients; trial points
    are evaluated without gradients by `value` (the objective's sum at the current values).

    Args:
        obj: the objective.
        value: () -> float, the objective at the current parameter values (no gradient).
        chunk: frames per Jacobian chunk (bounds memory for long videos).
        damping: initial Levenberg-Marquardt damping (multiplies the diagonal).
    """

    def __init__(self, obj: FlameObjective, value, chunk: int = 512, damping: float = 1e-3):
        super().__init__(list(obj.params.parameters()), {"damping": damping})
        self.obj, self.value, self.chunk = obj, value, max(int(chunk), 1)
        self.reset()

    def reset(self) -> None:
        """Forget the damping and the convergence flag (a new phase starts)."""
        self.lam = self.defaults["damping"]
        self.converged = False
        self.last_decrease = (float("nan"), float("nan"))

    def layout(self) -> Layout:
        p = self.obj.params
        return make_layout(p, [n for n, u in p.groups(["all"]).items() if u.requires_grad])

    def _gradient(self, lay: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        p, T = self.obj.params, self.obj.params.n_frames

        def grad(n):  # d/dvalue = d/du / scale
            u = getattr(p, f"u_{n}")
            g = u.grad if u.grad is not None else torch.zeros_like(u)
            return g / getattr(p, f"scale_{n}")

        u = p.u_shape
        gf = [grad(n).reshape(T, -1) for n, _, _ in lay.frame]
        gs = [grad(n).reshape(-1) for n, _, _ in lay.shared]
        return (
            torch.cat(gf, 1) if gf else u.new_zeros(T, 0),
            torch.cat(gs) if gs else u.new_zeros(0),
        )

    def _get(self, lay: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        p, T = self.obj.params, self.obj.params.n_frames
        u = p.u_shape
        pf = [p.value(n).detach().reshape(T, -1) for n, _, _ in lay.frame]
        sh = [p.value(n).detach().reshape(-1) for n, _, _ in lay.shared]
        return (
            torch.cat(pf, 1) if pf else u.new_zeros(T, 0),
            torch.cat(sh) if sh else u.new_zeros(0),
        )

    def _set(self, lay: Layout, pf: torch.Tensor, sh: torch.Tensor) -> None:
        p = self.obj.params
        for n, i, d in lay.frame:
            p.set_value(n, pf[:, i : i + d].reshape(p.value(n).shape))
        for n, i, d in lay.shared:
            p.set_value(n, sh[i : i + d].reshape(p.value(n).shape))

    @torch.no_grad()
    def step(self, closure):
        """One damped Gauss-Newton step; returns the closure's loss (before the step)."""
        with torch.enable_grad():
            loss = closure()
        lay = self.layout()
        gf, gs = self._gradient(lay)
        f0 = float(loss)
        sysm = normal_equations(self.obj, lay, self.chunk)
        dt, dev = gf.dtype, gf.device
        eye_s = torch.eye(lay.n_shared, dtype=dt, device=dev)
        pf, sh = self._get(lay)
        for _attempt in range(4):
            Af = sysm.Hff.clone()  # Hff + lam (diag(Hff) + 1e-9 I), without (T, Dp, Dp) temporaries
            d = Af.diagonal(dim1=1, dim2=2)
            d += self.lam * (d + 1e-9)
            As = sysm.Hss + self.lam * (torch.diag(sysm.Hss.diagonal()) + 1e-9 * eye_s)
            try:
                xf, xs = solve_frames_shared(Af, sysm.Hfs, As, sysm.smooth, -gf, -gs)
                solved = bool(torch.isfinite(xf).all() and torch.isfinite(xs).all())
            except torch.linalg.LinAlgError:  # a block lost definiteness in float32
                solved = False
            if not solved:  # a near-singular system (tiny priors): damp harder, never step to
                self.lam *= 10  # NaN (the contour's yaw bins cannot take it)
                continue
            for alpha in (1.0, 0.5, 0.25):
                self._set(lay, pf + alpha * xf, sh + alpha * xs)
                f1 = self.value()
                if f1 < f0:
                    self.lam = max(self.lam / 3, 1e-7)
                    return self._done(loss, f0, f1)
            self.lam *= 10
        self._set(lay, pf, sh)
        return self._done(loss, f0, f0)

    def _done(self, loss, f0: float, f1: float):
        self.last_decrease = (f0, f1)
        self.converged = f0 - f1 <= 1e-7 * abs(f0) and self.lam > 1e3
        return loss
