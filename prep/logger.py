"""Experiment logging: one run per subject and stage, grouped by dataset.

Backends (`logger.backend`): `wandb` (offline by default; online with logger.mode=online, bounded
by logger.init_timeout_s, see `prep.wandb_runs`), `csv` and `none`. A stage logs its metrics,
images, videos and QA tables through `ExperimentLogger`; a tracker's Lightning Trainer logs its
per-step loss terms and metrics through `ExperimentLogger.lightning()`, Lightning's own logger of
the same backend writing into the same run. The W&B run starts lazily, on the first thing logged,
so stages that log nothing cost nothing.

Runs are named ``<subject>/<stage>`` followed by the job's swept or changed config values (e.g.
``c01/fit_flame fit_flame.w.smooth_pose=10``), so a sweep's runs are told apart; each run records
the whole resolved config and the job's overrides. CSV runs go to
``<logger.dir>/<dataset>/<subject>/<stage>/<run id>/`` (``metrics.csv`` per step from Lightning,
``stage.csv`` for stage metrics, ``hparams.yaml`` the config).
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from prep.config import Config
    from prep.subject import SubjectDir

log = logging.getLogger(__name__)

# Override keys that say where or how a job runs rather than what it computes (left out of run
# names): top-level sections, and single keys.
_PLACE_KEYS = (
    "dataset",
    "subject",
    "stage",
    "logger",
    "hydra",
    "assets",
    "work_dir",
    "only",
    "force",
    "debug",
    "lock_wait",
    "trainer",
    "device",
)
_QUIET_KEYS = ("fit_flame.threads", "fit_flame.overlay_video", "fit_flame.overlay_max_frames")
STEP_METRIC = "trainer/global_step"


class ExperimentLogger:
    """Base class and `none` backend: every call is a no-op."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log scalar metrics (`step`: an index of the stage's own, logged as ``stage_step``)."""

    def log_image(self, key: str, image_rgb: np.ndarray) -> None:
        """Log an (H,W,3) uint8 RGB image."""

    def log_video(self, key: str, path: Path | str) -> None:
        """Log an mp4 file."""

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Log a table (e.g. headline numbers across subjects)."""

    def summary(self, values: dict[str, Any]) -> None:
        """Set the run's summary values (headline metrics)."""

    def lightning(self):
        """A Lightning logger writing into this run, or None (no logging)."""
        return None

    def finish(self) -> None:
        """Close the run."""


class CsvLogger(ExperimentLogger):
    """Writes ``stage.csv`` (time, step, key, value rows) into the run's folder.

    Args:
        folder: the run's folder (``<dir>/<dataset>/<subject>/<stage>/<run id>``).
        config: the run's config, written to ``hparams.yaml`` with the first Lightning logger.
    """

    def __init__(self, folder: Path, config: dict | None = None):
        self.folder, self.config = folder, config or {}
        self.path = folder / "stage.csv"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["time", "step", "key", "value"])
            for k, v in metrics.items():
                w.writerow([f"{time.time():.3f}", "" if step is None else step, k, v])

    def summary(self, values: dict[str, Any]) -> None:
        self.log_metrics({f"summary/{k}": v for k, v in values.items()})

    def lightning(self):
        from lightning.pytorch.loggers import CSVLogger as LightningCsv

        lg = LightningCsv(save_dir=str(self.folder.parent), name="", version=self.folder.name)
        if not self.folder.exists():  # Lightning warns about a folder with files in it
            _ = lg.experiment
        lg.log_hyperparams(self.config)
        return lg


class WandbLogger(ExperimentLogger):
    """Weights & Biases run, started on first use."""

    def __init__(self, cfg: Config, subject: SubjectDir, stage: str):
        self.cfg, self.subject, self.stage = cfg, subject, stage
        self._run = None

    @property
    def run(self):
        if self._run is None:
            self._run = _start_wandb(self.cfg, self.subject, self.stage)
        return self._run

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        # W&B's own step belongs to the run (Lightning's rows advance it); a stage's index is
        # logged as a value so the two never conflict.
        self.run.log(dict(metrics) if step is None else {**metrics, "stage_step": step})

    def log_image(self, key: str, image_rgb: np.ndarray) -> None:
        import wandb

        self.run.log({key: wandb.Image(image_rgb)})

    def log_video(self, key: str, path: Path | str) -> None:
        import wandb

        self.run.log({key: wandb.Video(str(path), format="mp4")})

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        import wandb

        self.run.log({key: wandb.Table(columns=columns, data=rows)})

    def summary(self, values: dict[str, Any]) -> None:
        if values and self._run is not None:
            self._run.summary.update(values)

    def lightning(self):
        from lightning.pytorch.loggers import WandbLogger as LightningWandb

        if self.cfg.logger.mode == "disabled":
            return None
        run = self.run
        run.define_metric(STEP_METRIC)
        for prefix in ("loss", "metrics", "solver", "phase", "epoch"):
            run.define_metric(f"{prefix}*", step_metric=STEP_METRIC)
        return LightningWandb(experiment=run)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def job_overrides() -> list[str]:
    """The Hydra job's command-line overrides (empty outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def sweep_id() -> str | None:
    """The multirun's sweep folder (e.g. ``outputs/multirun/2025-01-01/10-00-00``), or None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir)


def sweep_tag(sweep: str) -> str:
    """A W&B tag (at most 64 characters) naming a sweep by its folder's last two parts."""
    return ("sweep:" + "/".join(Path(sweep).parts[-2:]))[:64]


def run_name(subject: str, stage: str, overrides: list[str]) -> str:
    """``<subject>/<stage>`` plus the overrides that change what is computed."""
    keys = [o.lstrip("+~").split("=")[0] for o in overrides]
    keep = [
        o
        for o, k in zip(overrides, keys, strict=True)
        if k.split(".")[0] not in _PLACE_KEYS and k not in _QUIET_KEYS
    ]
    return " ".join([f"{subject}/{stage}", *keep])


def run_config(cfg: Config) -> dict:
    """The resolved config plus the job's overrides and sweep, as logged with each run."""
    from prep.config import to_plain

    return {**to_plain(cfg), "overrides": job_overrides(), "sweep": sweep_id()}


def _start_wandb(cfg: Config, subject: SubjectDir, stage: str):
    import wandb

    from prep.wandb_runs import init_online

    folder = Path(cfg.logger.dir)
    folder.mkdir(parents=True, exist_ok=True)
    sweep = sweep_id()
    kwargs: dict[str, Any] = dict(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.dataset.name,
        job_type=stage,
        name=run_name(subject.name, stage, job_overrides()),
        tags=list(cfg.logger.tags) + ([sweep_tag(sweep)] if sweep else []),
        dir=str(folder),
        config=run_config(cfg),
        reinit="finish_previous",
    )
    mode = cfg.logger.mode
    if mode == "online":
        run = init_online(kwargs, cfg.logger.init_timeout_s)
        if run is not None:
            return run
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(mode="disabled" if mode == "disabled" else "offline", **kwargs)


def make_logger(cfg: Config, subject: SubjectDir, stage: str) -> ExperimentLogger:
    """The logger backend selected by `cfg.logger.backend`."""
    backend = cfg.logger.backend
    if backend == "wandb":
        return WandbLogger(cfg, subject, stage)
    if backend == "csv":
        run_id = f"run-{time.strftime('%Y%m%d_%H%M%S')}-{secrets.token_hex(3)}"
        folder = Path(cfg.logger.dir) / cfg.dataset.name / subject.name / stage / run_id
        return CsvLogger(folder, run_config(cfg))
    return ExperimentLogger()
