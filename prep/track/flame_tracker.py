"""The FLAME tracker as a LightningModule: all frames at once, L-BFGS, phases with budgets.

One optimisation step is one L-BFGS iteration (strong-Wolfe line search, a few function
evaluations) over every frame's parameters together; the datamodule serves the whole sequence as
one batch. Phases (`prep.config.flame.PhaseConfig`) choose which parameters move and for how many
iterations: rigid init, joint fit, eye refinement by default. Only the vertices the landmark
terms need are evaluated (`FlameModel.landmarks`).

Hook for a photometric phase: `fit_phases` takes extra `PhaseConfig`s, and `extra_loss` (a
callable ``(tracker, batch) -> dict[str, Tensor]`` of weighted terms) adds terms to the total.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lightning as L
import torch

from prep.config.flame import PhaseConfig, TrackerConfig
from prep.models.flame import FlameModel
from prep.track.flame_data import FlameDataModule
from prep.track.flame_params import FlameParams, project_flame_points
from prep.track.gauss_newton import GaussNewton, make_layout
from prep.track.losses import mean_sq, point_loss, smooth_sq

log = logging.getLogger(__name__)

ExtraLoss = Callable[["FlameTracker", dict], dict[str, torch.Tensor]]


@dataclass
class PhaseLog:
    """What one phase did: its name, iterations, wall time and last loss terms."""

    name: str
    iters: int
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)


class FlameTracker(L.LightningModule):
    """Fits `FlameParams` to a sequence's 2D observations.

    Args:
        flame: the FLAME layer (with a landmark embedding).
        params: the sequence's parameters (initialised by the caller).
        cfg: tracker config (weights, loss, L-BFGS settings).
        fixed_shape: keep the shape coefficients fixed (``shape_from``).
        extra_loss: optional extra weighted terms (photometric hook).
    """

    def __init__(
        self,
        flame: FlameModel,
        params: FlameParams,
        cfg: TrackerConfig,
        fixed_shape: bool = False,
        extra_loss: ExtraLoss | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.flame, self.params, self.cfg = flame, params, cfg
        self.fixed_shape, self.extra_loss = fixed_shape, extra_loss
        self.phase = PhaseConfig()
        self.n_evals = 0
        self.phase_list: list[PhaseConfig] = []  # phases of a single-Trainer (gn) run
        self.phase_logs: list[PhaseLog] = []
        self.phase_callbacks: list[Callable[[int, PhaseLog], None]] = []
        self.last_terms: dict[str, float] = {}
        self.use_dense = cfg.w.dense > 0 and flame.mediapipe is not None
        self.iris_rows = slice(68, 70) if flame.n_landmarks == 70 else slice(0, 0)

    # ---- model evaluation -------------------------------------------------------------------
    def predict(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projected landmarks ``(T, 68|70, 2)`` and dense points ``(T, M, 2)`` in crop pixels."""
        lmk3d, mp3d, _ = self.flame.landmarks(
            **self.params.flame_kwargs(), with_mediapipe=self.use_dense
        )
        K = self.params.K_orig()
        A = batch["orig_to_crop"]
        lmk = project_flame_points(lmk3d, K, A)
        dense = project_flame_points(mp3d, K, A) if mp3d is not None else None
        return lmk, dense

    def loss_terms(self, batch: dict) -> dict[str, torch.Tensor]:
        """Weighted loss terms (their sum is the objective)."""
        w, c, p = self.cfg.w, self.cfg, self.params
        lmk, dense = self.predict(batch)
        hw = batch["image_size"].to(lmk.dtype)
        scale = torch.stack([hw[1], hw[0]]) / 2
        eps = c.charbonnier_eps_px / float(scale.mean())
        lw = batch["lmk_w"].clone()
        lw[:, :17] *= w.contour
        terms = {"lmk": w.lmk * point_loss(lmk[:, :68], batch["lmk_px"], lw, scale, c.loss, eps)}
        if self.iris_rows.stop and w.iris > 0:
            wi = w.iris * self.phase.iris_scale
            terms["iris"] = wi * point_loss(
                lmk[:, self.iris_rows], batch["iris_px"], batch["iris_w"], scale, c.loss, eps
            )
        if dense is not None:
            terms["dense"] = w.dense * point_loss(
                dense, batch["dense_px"], batch["dense_w"], scale, c.loss, eps
            )
        terms["prior"] = (
            (0.0 if self.fixed_shape else w.shape_prior * mean_sq(p.shape))
            + w.expr_prior * mean_sq(p.expr)
            + w.jaw_prior * mean_sq(p.jaw_pose)
            + w.neck_prior * mean_sq(p.neck_pose)
            + w.eyes_prior * mean_sq(p.eyes_pose)
            + w.eyelids_prior * mean_sq(p.eyelids)
        )
        pose = torch.cat([p.global_pose, p.neck_pose, p.jaw_pose], 1)
        terms["smooth"] = (
            w.smooth_pose * smooth_sq(pose)
            + w.smooth_expr * smooth_sq(p.expr)
            + w.smooth_transl * smooth_sq(p.transl)
            + w.smooth_eyes * smooth_sq(p.eyes_pose)
            + w.smooth_expr * smooth_sq(p.eyelids)
        )
        if self.extra_loss is not None:
            terms.update(self.extra_loss(self, batch))
        return terms

    @torch.no_grad()
    def _residual_weights(self, batch: dict, lmk: torch.Tensor):
        hw = batch["image_size"].to(lmk.dtype)
        scale = torch.stack([hw[1], hw[0]]) / 2
        lw = batch["lmk_w"].clone()
        lw[:, :17] *= self.cfg.w.contour
        parts = [(slice(0, 68), lw * self.cfg.w.lmk)]
        if self.iris_rows.stop and self.cfg.w.iris > 0:
            parts.append(
                (self.iris_rows, batch["iris_w"] * self.cfg.w.iris * self.phase.iris_scale)
            )
        return scale, parts

    def precondition(self, batch: dict, names: list[str], n_probes: int = 8) -> None:
        """Jacobi-precondition the phase's parameters from a Gauss-Newton diagonal estimate.

        ``diag(J^T J)`` of the weighted landmark residuals is estimated with Rademacher probes
        (Hutchinson); each element's scale becomes ``1 / sqrt(diag)``, floored per parameter so
        elements without data (invalid frames) keep a sane step.
        """
        p = self.params
        groups = {n: u for n, u in p.groups(names).items() if u.requires_grad}
        if not groups:
            return
        lmk, _ = self.predict(batch)
        scale, parts = self._residual_weights(batch, lmk)
        g = torch.Generator().manual_seed(0)
        diag = {n: torch.zeros_like(u) for n, u in groups.items()}
        for _ in range(n_probes):
            v = torch.zeros_like(lmk)
            for rows, w in parts:
                r = torch.randint(0, 2, lmk[:, rows].shape, generator=g).to(lmk.dtype) * 2 - 1
                v[:, rows] = r * w.clamp(min=0).sqrt()[..., None] / scale
            grads = torch.autograd.grad(
                lmk, list(groups.values()), v, retain_graph=True, allow_unused=True
            )
            for n, gr in zip(groups, grads, strict=True):
                if gr is not None:
                    diag[n] += gr.detach() ** 2 / n_probes
        for n, d in diag.items():
            d_val = d / getattr(p, f"scale_{n}") ** 2  # curvature w.r.t. the value itself
            pos = d_val[d_val > 0]
            floor = 1e-2 * pos.median() if pos.numel() else torch.ones((), dtype=d.dtype)
            p.set_scale(n, 1.0 / torch.sqrt(torch.maximum(d_val, floor)))

    # ---- Lightning ------------------------------------------------------------------------------
    def phase_parameters(self) -> list[torch.nn.Parameter]:
        groups = self.params.groups(list(self.phase.params))
        if self.fixed_shape:
            groups.pop("shape", None)
        return list(groups.values())

    def configure_optimizers(self):
        if self.cfg.solver == "gn":
            return None  # Gauss-Newton steps are taken in training_step
        if self.cfg.solver != "lbfgs":
            raise ValueError(f"tracker.solver={self.cfg.solver!r}; use gn or lbfgs")
        params = self.phase_parameters()
        for q in self.params.parameters():
            q.requires_grad_(any(q is r for r in params))
        return torch.optim.LBFGS(
            params,
            lr=self.cfg.lbfgs_lr,
            max_iter=max(self.phase.iters, 1),
            history_size=self.cfg.lbfgs_history,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-15,
        )

    def training_step(self, batch: dict, batch_idx: int) -> None:
        """One step = the whole phase (Gauss-Newton, or L-BFGS iterating inside `step`).

        With the Gauss-Newton solver one Trainer runs every phase: epoch k is phase k.
        """
        if self.cfg.solver == "gn":
            if self.phase_list:
                self.phase = self.phase_list[self.current_epoch]
            t0 = time.perf_counter()
            lay = make_layout(self.params, list(self.phase.params), self.fixed_shape)
            gn = GaussNewton(self, batch, lay)
            gn.chunk = max(int(self.cfg.gn_chunk), 1)
            hist = gn.run(self.phase.iters)
            self.n_evals = len(hist)
            with torch.no_grad():
                terms = self.loss_terms(batch)
            self.last_terms = {k: float(v) for k, v in terms.items()}
            self.last_terms["total"] = float(sum(terms.values()))
            if self.phase_list:
                self._end_phase(time.perf_counter() - t0)
            return
        opt = self.optimizers()
        self.precondition(batch, list(self.phase.params))
        self.n_evals = 0

        def closure() -> torch.Tensor:
            opt.zero_grad()
            terms = self.loss_terms(batch)
            total = sum(terms.values())
            self.manual_backward(total)
            self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
            self.last_terms["total"] = float(total.detach())
            self.n_evals += 1
            return total

        opt.step(closure=closure)

    def _end_phase(self, seconds: float) -> None:
        entry = PhaseLog(self.phase.name, self.phase.iters, seconds, dict(self.last_terms))
        _log_phase(entry, self.n_evals)
        self.phase_logs.append(entry)
        for cb in self.phase_callbacks:
            cb(len(self.phase_logs) - 1, entry)

    def train_dataloader(self):  # only used when no datamodule is passed
        raise RuntimeError("FlameTracker needs a FlameDataModule")


def _log_phase(entry: PhaseLog, n_evals: int) -> None:
    log.info(
        "phase %s: %d iterations (%d evaluations) in %.2fs, loss %s",
        entry.name,
        entry.iters,
        n_evals,
        entry.seconds,
        {k: f"{v:.3g}" for k, v in entry.terms.items()},
    )


def _trainer(device: str, epochs: int) -> L.Trainer:
    # Lightning announces devices and tips on every Trainer; that is noise here.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return L.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def fit_phases(
    tracker: FlameTracker,
    datamodule: FlameDataModule,
    phases: list[PhaseConfig],
    device: str = "cpu",
    on_phase_end: Callable[[int, PhaseLog], None] | None = None,
) -> list[PhaseLog]:
    """Run the phases in order with their iteration budgets.

    Gauss-Newton: one Trainer, one epoch per phase. L-BFGS: one Trainer per phase (its
    optimiser holds the phase's parameters). `on_phase_end(k, log)` runs after phase k.
    """
    phases = [p for p in phases if p.iters > 0]
    callbacks = [on_phase_end] if on_phase_end is not None else []
    if tracker.cfg.solver == "gn":
        tracker.phase_list, tracker.phase_logs, tracker.phase_callbacks = phases, [], callbacks
        try:
            if phases:
                _trainer(device, len(phases)).fit(tracker, datamodule=datamodule)
        finally:
            tracker.phase_list, tracker.phase_callbacks = [], []
            for q in tracker.params.parameters():
                q.requires_grad_(True)
        return tracker.phase_logs
    logs = []
    for k, phase in enumerate(phases):
        tracker.phase = phase
        if not tracker.phase_parameters():
            log.info("phase %s has no parameters to optimise; skipped", phase.name)
            continue
        t0 = time.perf_counter()
        _trainer(device, 1).fit(tracker, datamodule=datamodule)
        entry = PhaseLog(
            phase.name, phase.iters, time.perf_counter() - t0, dict(tracker.last_terms)
        )
        _log_phase(entry, tracker.n_evals)
        logs.append(entry)
        for cb in callbacks:
            cb(k, entry)
    for q in tracker.params.parameters():
        q.requires_grad_(True)
    return logs
