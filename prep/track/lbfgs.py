"""L-BFGS taking one iteration per `step(closure)`, for trackers stepped by Lightning.

torch's `LBFGS` with ``max_iter=1`` is one quasi-Newton iteration (a strong-Wolfe line search
on top), keeping its curvature history across steps. Two additions:

- each step starts by evaluating the closure at the current point, which the previous step's
  line search usually evaluated last; that result is reused when the parameters are bitwise
  unchanged since (saving one objective + gradient per step);
- `reset` forgets the history, for when the set of moving parameters changes (a new phase):
  parameters that do not require grad have no gradient, so they never move, but directions
  remembered from a phase that moved them would.
"""

from __future__ import annotations

import torch


class LBFGS(torch.optim.LBFGS):
    """One L-BFGS iteration per step; see the module docstring.

    Args:
        params: every tensor the tracker may move (the phase decides which require grad).
        lr: step scale (the line search acts on top). history_size: curvature pairs kept.
        max_line_search: objective evaluations the strong-Wolfe line search may take per step.
    """

    def __init__(self, params, lr: float = 1.0, history_size: int = 20, max_line_search: int = 25):
        super().__init__(
            params,
            lr=lr,
            max_iter=1,
            max_eval=1 + max_line_search,  # torch's default max_iter * 5 // 4 would be 1
            history_size=history_size,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
        )
        self._last: tuple | None = None

    def reset(self) -> None:
        """Forget the curvature history and the cached evaluation."""
        self.state.clear()
        self._last = None

    def step(self, closure):
        params = self._params

        def cached():
            last = self._last
            same = last is not None and all(
                torch.equal(p, q) for p, q in zip(params, last[0], strict=True)
            )
            if same:
                for p, g in zip(params, last[2], strict=True):
                    p.grad = None if g is None else g.clone()
                return last[1]
            with torch.enable_grad():
                loss = closure()
            grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
            self._last = ([p.detach().clone() for p in params], loss, grads)
            return loss

        return super().step(cached)


def precondition(obj, names: list[str], n_probes: int = 8) -> None:
    """Jacobi-precondition parameters `names` from a Gauss-Newton diagonal estimate.

    ``diag(J^T W J)`` of the objective's weighted point residuals is estimated with Rademacher
    probes (Hutchinson); each element's scale becomes ``1 / sqrt(diag)``, floored per parameter
    so elements without data (invalid frames) keep a sane step. L-BFGS then moves ``u`` with
    ``value = u * scale`` (see `FlameParams`), which makes it converge in tens of iterations.

    Args:
        obj: the tracker's `FlameObjective`.
        names: parameters of the phase (those not requiring grad are left alone).
    """
    p = obj.params
    groups = {n: u for n, u in p.groups(names).items() if u.requires_grad}
    if not groups:
        return
    with torch.enable_grad():
        pts = obj.points_px(obj.values())
    g = torch.Generator().manual_seed(0)
    diag = {n: torch.zeros_like(u) for n, u in groups.items()}
    for _ in range(n_probes):
        v = torch.zeros_like(pts)
        for t in obj.terms:
            if t.kind != "points":
                continue
            rows, _, w = obj.point_set(t.name)
            sign = torch.randint(0, 2, pts[:, rows].shape, generator=g).to(pts) * 2 - 1
            v[:, rows] = sign * (w * obj.weight(t)).clamp(min=0).sqrt()[..., None] / obj.scale
        grads = torch.autograd.grad(
            pts, list(groups.values()), v, retain_graph=True, allow_unused=True
        )
        for n, gr in zip(groups, grads, strict=True):
            if gr is not None:
                diag[n] += gr.detach() ** 2 / n_probes
    for n, d in diag.items():
        d_val = d / getattr(p, f"scale_{n}") ** 2  # curvature w.r.t. the value itself
        pos = d_val[d_val > 0]
        floor = 1e-2 * pos.median() if pos.numel() else torch.ones((), dtype=d.dtype)
        p.set_scale(n, 1.0 / torch.sqrt(torch.maximum(d_val, floor)))
