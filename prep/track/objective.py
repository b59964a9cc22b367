"""The FLAME tracker's objective, declared once as a list of terms.

Every term is a weighted mean of robust squared residuals::

    loss_k = w_k * sum_i a_i * rho(|r_i|^2)

- ``w_k``: the term's weight, ``fit_flame.w.<Term.weight>`` (times a phase multiplier, e.g. the
  eye phase's ``iris_scale``);
- ``r_i``: one residual (a 2D point error in normalised crop units, a coefficient, or a
  frame-to-frame difference), computed by the term's residual function;
- ``a_i``: its share of the mean: point confidence / number of weighted points of the set, or
  1 / number of elements for priors and smoothness, so weights keep their meaning across
  sequence lengths;
- ``rho``: ``fit_flame.loss`` for points (Charbonnier ``sqrt(s + eps^2) - eps`` or l2 ``s``), l2
  for priors and smoothness.

The tracker's autograd loss is the sum of `FlameObjective.evaluate`. The Gauss-Newton solver
(`prep.track.gauss_newton`) builds its normal equations from the same terms: residual weights
``W_i = 2 w_k a_i rho'(|r_i|^2)`` (the IRLS form of the robust kernel) and each kind's Jacobian:

- ``points``: projected FLAME points minus observations; dense per-frame columns and shared
  columns (`prep.track.flame_jacobian`);
- ``prior``: the parameter values (identity on their columns);
- ``relative``: the expression coefficients over the inner face's relative size
  ``k = 1 + g . shape`` (`FlameObjective.face_scale`; 1 without ``fit_flame.expr_prior_per_size``):
  a face that shrinks with its expressions earns no smaller prior; couples the expression
  and shape columns;
- ``size``: the face's relative size change ``g . shape`` (a rank-one block ``g g^T``);
- ``smooth``: differences of consecutive frames (couples neighbouring frames);
- ``relative_smooth``: the expression's frame-to-frame differences over ``k`` (1 without
  ``fit_flame.expr_smooth_per_size``; couples neighbouring frames and the shape).

so that ``J^T W r`` is exactly the autograd gradient of each term (tests/track/test_objective.py).
Camera and pixel conventions: `prep.track.flame_params`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from prep.config.flame import PhaseConfig, TrackerConfig
from prep.track.flame_params import ALL_PARAMS, FlameParams, project_flame_points
from prep.track.losses import robust

Residual = Callable[["FlameObjective", "Term", dict, torch.Tensor | None], tuple]


def point_residual(obj: FlameObjective, term: Term, v: dict, pts: torch.Tensor | None):
    """Residuals ``(T, N, 2)`` of a point set and their shares ``a (T, N)``."""
    rows, obs, w = obj.point_set(term.name)
    assert pts is not None  # point terms are evaluated with the projected points
    r = (pts[:, rows] - obs) / obj.scale
    return r, w / (w > 0).sum().clamp(min=1)


def prior_residual(obj: FlameObjective, term: Term, v: dict, pts: torch.Tensor | None):
    """The parameter values ``(n, 1)``, each an equal share of the mean."""
    x = torch.cat([v[n].reshape(-1) for n in term.params])
    return x[:, None], torch.full_like(x, 1.0 / max(x.numel(), 1))


def relative_prior_residual(obj: FlameObjective, term: Term, v: dict, pts: torch.Tensor | None):
    """The values over the inner face's relative size ``1 + g . shape`` (`face_scale`)."""
    x, a = prior_residual(obj, term, v, pts)
    return x / obj.face_scale(v, term), a


def relative_smooth_residual(obj: FlameObjective, term: Term, v: dict, pts: torch.Tensor | None):
    """Frame-to-frame differences over the inner face's relative size (`face_scale`)."""
    d, a = smooth_residual(obj, term, v, pts)
    return d / obj.face_scale(v, term), a


def size_residual(obj: FlameObjective, term: Term, v: dict, pts: torch.Tensor | None):
    """The face's relative change in size from the template's ``(1, 1)``, one share."""
    r = (obj.size_direction @ v["shape"].reshape(-1)).reshape(1, 1)
    return r, torch.ones(1, dtype=r.dtype, device=r.device)


def smooth_residual(obj: FlameObjective, term: Term, v: dict, pts: torch.Tensor | None):
    """Frame-to-frame differences ``(T - 1, D, 1)`` of the term's per-frame parameters."""
    x = torch.cat([v[n] for n in term.params if obj.per_frame(n)], 1)
    d = x[1:] - x[:-1]
    return d[..., None], torch.full_like(d, 1.0 / max(d.numel(), 1))


@torch.no_grad()
def face_size_direction(flame) -> torch.Tensor:
    """``g (n_shape,)``: the inner face's relative size change is ``g . shape``.

    The size change is the least-squares scale of the identity's displacement of the 51 inner
    landmarks (brows, eyes, nose, mouth: what `rigid_init` sizes the face by) about their
    centroid at rest, ``sum_i d_i . (t_i - c) / sum_i |t_i - c|^2`` (template t, displacement
    d, linear in the shape).
    """
    tri, bary = flame.static_vglobal[:51], flame.static_bary[:51]  # (51, 3) vertices, weights
    t = (flame.v_template[tri] * bary[..., None]).sum(1)
    t = t - t.mean(0)
    dirs = (flame.dirs[tri, :, : flame.n_shape] * bary[..., None, None]).sum(1)  # (51, 3, K)
    return torch.einsum("nck,nc->k", dirs, t) / (t * t).sum()


@dataclass(frozen=True)
class Term:
    """One term of the objective.

    Attributes:
        name: logged as ``loss/<name>``; point terms name their point set (lmk, iris, dense).
        weight: the `prep.config.flame.TrackerWeights` field holding its weight.
        kind: points | prior | relative | size | smooth | relative_smooth (the Jacobian
            structure the Gauss-Newton solver uses).
        params: prior/smooth: the parameters forming the residual (points: all, via FLAME).
        phase_scale: a `PhaseConfig` field multiplying the weight in each phase, or None.
    """

    name: str
    weight: str
    kind: str
    params: tuple[str, ...] = ()
    phase_scale: str | None = None

    @property
    def residual(self) -> Residual:
        return {
            "points": point_residual,
            "prior": prior_residual,
            "relative": relative_prior_residual,
            "size": size_residual,
            "smooth": smooth_residual,
            "relative_smooth": relative_smooth_residual,
        }[self.kind]

    @property
    def smooth(self) -> bool:
        """A frame-to-frame difference term."""
        return self.kind in ("smooth", "relative_smooth")

    @property
    def relative(self) -> bool:
        """A term that can be measured over the face's size (`FlameObjective.per_size`)."""
        return self.kind in ("relative", "relative_smooth")


POSE = ("global_pose", "neck_pose", "jaw_pose")
TERMS: tuple[Term, ...] = (
    Term("lmk", "lmk", "points"),  # 68 points; the 17 contour points x w.contour
    Term("iris", "iris", "points", phase_scale="iris_scale"),
    Term("dense", "dense", "points"),
    Term("prior/shape", "shape_prior", "prior", ("shape",)),
    Term("prior/expr", "expr_prior", "relative", ("expr",)),
    Term("prior/jaw", "jaw_prior", "prior", ("jaw_pose",)),
    Term("prior/neck", "neck_prior", "prior", ("neck_pose",)),
    Term("prior/eyes", "eyes_prior", "prior", ("eyes_pose",)),
    Term("prior/eyelids", "eyelids_prior", "prior", ("eyelids",)),
    Term("prior/size", "size_prior", "size", ("shape",)),
    Term("smooth/pose", "smooth_pose", "smooth", POSE),
    Term("smooth/expr", "smooth_expr", "relative_smooth", ("expr",)),
    Term("smooth/transl", "smooth_transl", "smooth", ("transl",)),
    Term("smooth/eyes", "smooth_eyes", "smooth", ("eyes_pose",)),
    Term("smooth/eyelids", "smooth_expr", "smooth", ("eyelids",)),
)


class FlameObjective:
    """The tracker's objective on one sequence.

    Args:
        flame: FLAME layer with a landmark embedding (68 or 70 points, optional dense points).
        params: the sequence's parameters.
        cfg: tracker config (weights, robust kernel).
        fixed_shape: the shape is kept fixed (``shape_from``): its prior is left out.
        batch: observations (`FlameDataModule.batch`); set again when it moves device.
    """

    def __init__(self, flame, params: FlameParams, cfg: TrackerConfig, fixed_shape: bool, batch):
        self.flame, self.params, self.cfg = flame, params, cfg
        has_dense = batch["dense_px"].shape[1] > 0  # none when the subject has no dense mesh
        self.use_dense = cfg.w.dense > 0 and flame.mediapipe is not None and has_dense
        self.phase = PhaseConfig()
        self.batch = batch
        self.size_direction = face_size_direction(flame)
        self.terms = [t for t in TERMS if self._applies(t, fixed_shape)]

    def _applies(self, t: Term, fixed_shape: bool) -> bool:
        if t.kind == "points":
            return {"lmk": True, "iris": self.flame.n_landmarks == 70, "dense": self.use_dense}[
                t.name
            ]
        if fixed_shape and "shape" in t.params:
            return False
        v = [self.params.value(n) for n in t.params]
        if t.smooth:
            v = [x for n, x in zip(t.params, v, strict=True) if self.per_frame(n)]
            return bool(v) and self.params.n_frames > 1 and sum(x.shape[1] for x in v) > 0
        return sum(x.numel() for x in v) > 0

    # ---- pieces the terms share ------------------------------------------------------------------
    @property
    def batch(self) -> dict:
        return self._batch

    @batch.setter
    def batch(self, batch: dict) -> None:
        self._batch = batch
        hw = batch["image_size"].to(batch["lmk_px"].dtype)
        self.scale = torch.stack([hw[1], hw[0]]) / 2  # pixels per normalised unit (x, y)
        self.eps = self.cfg.charbonnier_eps_px / float(self.scale.mean())
        lw = batch["lmk_w"].clone()
        lw[:, :17] *= self.cfg.w.contour
        n = self.flame.n_landmarks
        sets = {"lmk": (slice(0, 68), batch["lmk_px"], lw)}
        if n == 70:
            sets["iris"] = (slice(68, 70), batch["iris_px"], batch["iris_w"])
        if self.use_dense:
            m = batch["dense_px"].shape[1]
            sets["dense"] = (slice(n, n + m), batch["dense_px"], batch["dense_w"])
        self._sets = sets

    def point_set(self, name: str, sl: slice = slice(None)):
        """(rows in `points_px`, observations (t, N, 2), per-point weights (T, N)) of a set.

        The weights are those of all frames (a term's mean counts every frame, also when the
        solver works on a chunk of frames).
        """
        rows, obs, w = self._sets[name]
        return rows, obs[sl], w

    def per_size(self, term: Term) -> bool:
        """The term is measured over the face's size (``expr_prior_per_size`` for the prior,
        ``expr_smooth_per_size`` for the smoothness)."""
        flag = {"relative": "expr_prior_per_size", "relative_smooth": "expr_smooth_per_size"}
        return term.kind in flag and bool(getattr(self.cfg, flag[term.kind]))

    def face_scale(self, v: dict, term: Term) -> torch.Tensor:
        """``k``: the inner face's size relative to the template's, ``1 + g . shape`` (at least
        0.5), or 1 when `term` is not measured per size (`per_size`)."""
        shape = v["shape"].reshape(-1)
        if not self.per_size(term):
            return shape.new_ones(())
        return (1 + self.size_direction.to(shape.dtype) @ shape).clamp(min=0.5)

    def per_frame(self, name: str) -> bool:
        return self.params.value(name).shape[0] == self.params.n_frames and name != "shape"

    def weight(self, term: Term) -> float:
        w = float(getattr(self.cfg.w, term.weight))
        return w * float(getattr(self.phase, term.phase_scale)) if term.phase_scale else w

    def rho(self, s: torch.Tensor, term: Term) -> tuple[torch.Tensor, torch.Tensor]:
        """Robust kernel of the term and its derivative at squared norms `s`."""
        if term.kind == "points" and self.cfg.loss == "charbonnier":
            root = torch.sqrt(s + self.eps * self.eps)
            return root - self.eps, 0.5 / root
        return robust(s, "l2", 0.0), torch.ones_like(s)

    # ---- evaluation -----------------------------------------------------------------------------
    def values(self, detach: bool = False) -> dict[str, torch.Tensor]:
        """Parameter values by name; a shared translation is expanded to every frame."""
        p, T = self.params, self.params.n_frames
        v = {n: p.value(n) for n in ALL_PARAMS}
        if v["transl"].shape[0] == 1:
            v["transl"] = v["transl"].expand(T, 3).clone()  # jvp needs its own memory
        return {n: x.detach() for n, x in v.items()} if detach else v

    def points_px(self, v: dict, sl: slice = slice(None), bins=None) -> torch.Tensor:
        """Projected landmarks (+ dense points) ``(t, N, 2)``, crop pixels, for values `v`.

        Args:
            v: parameter values, per-frame ones already restricted to the frames `sl`.
            sl: the frames (their crop transforms).
            bins: fixed contour bins, or None to pick them from the pose.
        """
        lmk, mp, _ = self.flame.landmarks(
            v["shape"],
            v["expr"],
            v["global_pose"],
            v["neck_pose"],
            v["jaw_pose"],
            v["eyes_pose"],
            transl=v["transl"],
            bins=bins,
            with_mediapipe=self.use_dense,
            eyelids=v["eyelids"] if v["eyelids"].numel() else None,
        )
        pts = lmk if mp is None else torch.cat([lmk, mp], 1)
        return project_flame_points(
            pts, self.params.K_orig(v["focal"]), self.batch["orig_to_crop"][sl]
        )

    def evaluate(self, v: dict | None = None, pts: torch.Tensor | None = None):
        """Weighted value of every term (their sum is the objective), differentiable.

        Args:
            v: parameter values (`values()` by default); pts: their `points_px`, if known.
        """
        v = self.values() if v is None else v
        if pts is None and any(t.kind == "points" for t in self.terms):
            pts = self.points_px(v)
        out = {}
        for t in self.terms:
            r, a = t.residual(self, t, v, pts)
            out[t.name] = self.weight(t) * (a * self.rho((r * r).sum(-1), t)[0]).sum()
        return out

    # ---- what the Gauss-Newton solver needs -----------------------------------------------------
    def observations(self, sl: slice = slice(None)) -> torch.Tensor:
        """Observed points ``(t, N, 2)`` in the row order of `points_px`."""
        return torch.cat([obs for _, obs, _ in self._sets.values()], 1)[sl]

    def point_weights(self, e: torch.Tensor, sl: slice, terms: list[Term] | None = None):
        """Gauss-Newton weight ``2 w a rho'(|r|^2)`` of each residual coordinate ``(t, 2N)``.

        Args:
            e: normalised point residuals ``(t, 2N)`` of the frames `sl`.
            terms: the terms to include (all point terms by default); rows of others get 0.
        """
        terms = self.terms if terms is None else terms
        r = e.reshape(e.shape[0], -1, 2)
        s = (r * r).sum(-1)
        om = torch.zeros_like(s)
        for t in terms:
            if t.kind != "points":
                continue
            rows, _, w = self.point_set(t.name, sl)
            a = (w / (w > 0).sum().clamp(min=1))[sl]
            om[:, rows] = 2 * self.weight(t) * a * self.rho(s[:, rows], t)[1]
        return om.repeat_interleave(2, dim=1)

    def regulariser_terms(self, terms: list[Term] | None = None):
        """``(term, Gauss-Newton weight 2 w a)`` of the prior and smoothness terms.

        Their residuals are linear with unit coefficients, so this one number per term is
        their whole contribution to ``J^T W J`` (on their columns; a smoothness term also
        couples each frame with its neighbours).
        """
        terms = self.terms if terms is None else terms
        v = self.values(detach=True)
        out = []
        for t in terms:
            if t.kind == "points":
                continue
            _, a = t.residual(self, t, v, None)
            out.append((t, 2 * self.weight(t) * float(a.reshape(-1)[0])))
        return out
