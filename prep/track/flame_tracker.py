"""The FLAME tracker as a LightningModule: all frames at once, one solver step per Lightning step.

The datamodule serves the whole sequence as one batch per step. `configure_optimizers` returns
the solver (`fit_flame.solver`): Gauss-Newton by default (`prep.track.gauss_newton.GaussNewton`,
one damped Levenberg-Marquardt step per `step`) or L-BFGS (`prep.track.lbfgs.LBFGS`, one
iteration per `step`). Phases (`prep.config.flame.PhaseConfig`: rigid, joint, eyes by default)
are a callback (`prep.track.phases.PhaseSchedule`) that sets which parameters move and switches
at each phase's budget; the Trainer's ``max_steps`` is the sum of the budgets.

The objective is `prep.track.objective.FlameObjective`; after every step each of its terms
(``loss/<term>``), their total, the landmark RMSE and the iris error in pixels
(``metrics/lmk_rmse_px``, ``metrics/iris_err_px``), the phase index and the solver's damping
go through `self.log` to the Trainer's logger (W&B, CSV or none: `prep.logger`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch

from prep.config.core import TrainerConfig
from prep.config.flame import PhaseConfig, TrackerConfig
from prep.models.flame import FlameModel
from prep.track.flame_data import FlameDataModule
from prep.track.flame_params import FlameParams
from prep.track.gauss_newton import GaussNewton
from prep.track.lbfgs import LBFGS, precondition
from prep.track.objective import FlameObjective
from prep.track.phases import PhaseLog, PhaseSchedule
from prep.track.trainer import make_trainer

log = logging.getLogger(__name__)

__all__ = ["FlameTracker", "PhaseLog", "fit_phases"]


class FlameTracker(L.LightningModule):
    """Fits `FlameParams` to a sequence's 2D observations.

    Args:
        flame: the FLAME layer (with a landmark embedding).
        params: the sequence's parameters (initialised by the caller).
        cfg: tracker config (weights, loss, solver settings).
        batch: the observations (`FlameDataModule.batch`).
        fixed_shape: keep the shape coefficients fixed (``shape_from``).
    """

    def __init__(
        self,
        flame: FlameModel,
        params: FlameParams,
        cfg: TrackerConfig,
        batch: dict,
        fixed_shape: bool = False,
    ):
        super().__init__()
        self.flame, self.params, self.cfg, self.fixed_shape = flame, params, cfg, fixed_shape
        self.objective = FlameObjective(flame, params, cfg, fixed_shape, batch)
        self.phase_index = -1  # index of the current phase (start_phase counts them)
        self._state: tuple | None = None  # (parameter versions, terms, metrics) of the last eval

    @property
    def phase(self) -> PhaseConfig:
        return self.objective.phase

    # ---- evaluation ------------------------------------------------------------------------------
    def loss_terms(self, batch: dict | None = None) -> dict[str, torch.Tensor]:
        """Weighted loss terms at the current parameters (their sum is the objective)."""
        if batch is not None and batch is not self.objective.batch:
            self.objective.batch = batch
        return self.objective.evaluate()

    @torch.no_grad()
    def predict(self, batch: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Projected landmarks ``(T, 68|70, 2)`` and dense points ``(T, M, 2)`` in crop pixels."""
        if batch is not None and batch is not self.objective.batch:
            self.objective.batch = batch
        pts = self.objective.points_px(self.objective.values())
        n = self.flame.n_landmarks
        return pts[:, :n], (pts[:, n:] if self.objective.use_dense else None)

    def _key(self) -> tuple:
        return tuple(t._version for t in (*self.params.parameters(), *self.params.buffers()))

    @torch.no_grad()
    def state(self) -> tuple[dict[str, float], dict[str, float]]:
        """Loss terms (with ``total``) and metrics at the current parameters, cached.

        The Gauss-Newton line search evaluates the accepted point last, so logging it after the
        step costs nothing; any in-place change of a parameter invalidates the cache.
        """
        key = self._key()
        if self._state is not None and self._state[0] == key:
            return self._state[1], self._state[2]
        obj = self.objective
        v = obj.values()
        pts = obj.points_px(v)
        terms = {k: float(x) for k, x in obj.evaluate(v, pts).items()}
        terms["total"] = float(sum(terms.values()))
        metrics = {"lmk_rmse_px": _rmse_px(pts[:, :68], obj.batch["lmk_px"], obj.batch["lmk_w"])}
        if self.flame.n_landmarks == 70:
            metrics["iris_err_px"] = _mean_px(
                pts[:, 68:70], obj.batch["iris_px"], obj.batch["iris_w"]
            )
        self._state = (key, terms, metrics)
        return terms, metrics

    def objective_value(self) -> float:
        return self.state()[0]["total"]

    # ---- phases (driven by PhaseSchedule) --------------------------------------------------------
    def phase_parameters(self, phase: PhaseConfig | None = None) -> dict[str, torch.nn.Parameter]:
        groups = self.params.groups(list((phase or self.phase).params))
        if self.fixed_shape:
            groups.pop("shape", None)
        return groups

    def start_phase(self, phase: PhaseConfig, batch: dict) -> None:
        self.phase_index += 1
        self.objective.phase = phase
        self.objective.batch = batch
        moving = self.phase_parameters(phase)
        for u in self.params.parameters():  # the rest (a fixed focal, a fixed shape) stays
            u.requires_grad_(any(u is m for m in moving.values()))
        self._state = None
        opt = self.optimizers(use_pl_optimizer=False)
        assert isinstance(opt, GaussNewton | LBFGS)  # configure_optimizers returns one of them
        if isinstance(opt, LBFGS):
            precondition(self.objective, list(moving))
        opt.reset()

    def phase_converged(self) -> bool:
        return bool(getattr(self.optimizers(use_pl_optimizer=False), "converged", False))

    def phase_terms(self) -> dict[str, float]:
        return dict(self.state()[0])

    # ---- Lightning -------------------------------------------------------------------------------
    def configure_optimizers(self):
        if self.cfg.solver == "gn":
            return GaussNewton(self.objective, self.objective_value, self.cfg.gn_chunk)
        return LBFGS(
            list(self.params.parameters()),
            lr=self.cfg.lbfgs_lr,
            history_size=self.cfg.lbfgs_history,
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The objective at the current parameters (the solver's closure evaluates this)."""
        return torch.stack(list(self.loss_terms(batch).values())).sum()

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        if not self.trainer.loggers:  # nobody listens: spare the ~5 ms per step self.log costs
            return
        terms, metrics = self.state()
        values = {f"loss/{k}": v for k, v in terms.items()}
        values.update({f"metrics/{k}": v for k, v in metrics.items()})
        values["phase"] = float(self.phase_index)
        lam = getattr(self.optimizers(use_pl_optimizer=False), "lam", None)
        if lam is not None:
            values["solver/damping"] = float(lam)
        self.log_dict(values, on_step=True, on_epoch=False, batch_size=1)


def _rmse_px(pred: torch.Tensor, obs: torch.Tensor, w: torch.Tensor) -> float:
    """Mean over frames with weighted points of their RMSE (as `metrics.landmark_rmse_px`)."""
    m = (w > 0).to(pred.dtype)
    n = m.sum(1)
    sq = (((pred - obs) ** 2).sum(-1) * m).sum(1)
    ok = n > 0
    return float(torch.sqrt(sq[ok] / n[ok]).mean()) if bool(ok.any()) else float("nan")


def _mean_px(pred: torch.Tensor, obs: torch.Tensor, w: torch.Tensor) -> float:
    """Mean over frames with weighted points of their mean point distance."""
    m = (w > 0).to(pred.dtype)
    n = m.sum(1)
    d = (torch.linalg.norm(pred - obs, dim=-1) * m).sum(1)
    ok = n > 0
    return float((d[ok] / n[ok]).mean()) if bool(ok.any()) else float("nan")


def fit_phases(
    tracker: FlameTracker,
    datamodule: FlameDataModule,
    phases: list[PhaseConfig],
    device: str = "cpu",
    on_phase_end: Callable[[int, PhaseLog], None] | None = None,
    trainer_cfg: TrainerConfig | None = None,
    logger=None,
) -> list[PhaseLog]:
    """Run the phases in order, one Trainer, one solver step per Lightning step.

    Phases without steps or without parameters to move are skipped. `on_phase_end(k, log)`
    runs after phase k. `logger`: a Lightning logger (see `prep.logger`), or None.
    """
    todo = []
    for p in phases:
        if p.iters > 0 and tracker.phase_parameters(p):
            todo.append(p)
        elif p.iters > 0:
            log.info("phase %s has no parameters to optimise; skipped", p.name)
    if not todo:
        return []
    schedule = PhaseSchedule(todo, on_phase_end)
    datamodule.steps = schedule.max_steps
    trainer = make_trainer(
        trainer_cfg, device, schedule.max_steps, logger=logger, callbacks=[schedule]
    )
    try:
        trainer.fit(tracker, datamodule=datamodule)
    finally:
        for q in tracker.params.parameters():
            q.requires_grad_(True)
    return schedule.logs
