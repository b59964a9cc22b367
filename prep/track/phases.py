"""Tracker phases as a Lightning callback: which parameters move, for how many steps.

A phase (`prep.config.flame.PhaseConfig`) names the parameters it moves and its budget of
solver steps. `PhaseSchedule` starts the first phase before the first step and switches to the
next one when the current phase has used its budget or its solver reports convergence; after the
last phase it stops the Trainer. The Trainer's ``max_steps`` is the sum of the budgets.

The module the schedule drives provides ``start_phase(phase, batch)`` (set the moving
parameters, reset the solver), ``phase_converged() -> bool`` and ``phase_terms() -> dict``
(loss terms at the current parameters).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import lightning as L

from prep.config.flame import PhaseConfig

log = logging.getLogger(__name__)


@dataclass
class PhaseLog:
    """What one phase did: its name, solver steps taken, wall time and final loss terms."""

    name: str
    iters: int
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)


class PhaseSchedule(L.Callback):
    """Runs `phases` in order; see the module docstring.

    Args:
        phases: the phases (each with ``iters > 0``).
        on_phase_end: ``(k, PhaseLog)`` called after phase k, before the next one starts.
    """

    def __init__(
        self, phases: list[PhaseConfig], on_phase_end: Callable[[int, PhaseLog], None] | None
    ):
        self.phases, self.on_phase_end = phases, on_phase_end
        self.k, self.running = 0, False
        self.first_step, self.t0 = 0, 0.0
        self.logs: list[PhaseLog] = []

    @property
    def max_steps(self) -> int:
        return sum(p.iters for p in self.phases)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.running and self.k < len(self.phases):
            pl_module.start_phase(self.phases[self.k], batch)
            self.running, self.first_step, self.t0 = True, trainer.global_step, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        used = trainer.global_step - self.first_step
        if used < self.phases[self.k].iters and not pl_module.phase_converged():
            return
        phase = self.phases[self.k]
        entry = PhaseLog(phase.name, used, time.perf_counter() - self.t0, pl_module.phase_terms())
        log.info(
            "phase %s: %d steps in %.2fs, loss %s",
            entry.name,
            entry.iters,
            entry.seconds,
            {k: f"{v:.3g}" for k, v in entry.terms.items()},
        )
        self.logs.append(entry)
        if self.on_phase_end is not None:
            self.on_phase_end(self.k, entry)
        self.k, self.running = self.k + 1, False
        if self.k == len(self.phases):
            trainer.should_stop = True
