"""Experiment logging: one run per subject and stage, grouped by dataset.

Backends: `wandb` (offline by default, online when the user sets logger.mode=online and is logged
in; an online run that cannot reach the server falls back to offline and says so), `csv` (metrics
appended to a CSV per run) and `none`. The W&B run starts lazily, on the first thing logged, so
stages that log nothing cost nothing.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from prep.config import Config
    from prep.subject import SubjectDir

log = logging.getLogger(__name__)


class ExperimentLogger:
    """Base class and `none` backend: every call is a no-op."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log scalar metrics (per phase/iteration when `step` is given)."""

    def log_image(self, key: str, image_rgb: np.ndarray) -> None:
        """Log an (H,W,3) uint8 RGB image."""

    def log_video(self, key: str, path: Path | str) -> None:
        """Log an mp4 file."""

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Log a table (e.g. headline numbers across subjects)."""

    def summary(self, values: dict[str, Any]) -> None:
        """Set the run's summary values (headline metrics)."""

    def finish(self) -> None:
        """Close the run."""


class CsvLogger(ExperimentLogger):
    """Appends metrics to ``<dir>/<dataset>/<subject>/<stage>.csv``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder.with_suffix(".csv")

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
        self.run.log(dict(metrics), step=step)

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

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def _start_wandb(cfg: Config, subject: SubjectDir, stage: str):
    import wandb

    from prep.config import to_plain

    folder = Path(cfg.logger.dir)
    folder.mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.dataset.name,
        job_type=stage,
        name=f"{subject.name}/{stage}",
        tags=list(cfg.logger.tags),
        dir=str(folder),
        config=to_plain(cfg),
        reinit="finish_previous",
    )
    mode = cfg.logger.mode
    if mode == "online" and not _server_reachable(cfg.logger.init_timeout_s):
        log.warning("W&B server unreachable; logging offline to %s (sync later)", folder)
        mode = "offline"
    if mode == "online":
        try:
            return wandb.init(
                mode="online",
                settings=wandb.Settings(init_timeout=cfg.logger.init_timeout_s),
                **kwargs,
            )
        except Exception as e:  # network or auth failure: keep the run, locally
            log.warning("W&B online init failed (%s); logging offline to %s", e, folder)
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(mode="offline" if mode != "disabled" else "disabled", **kwargs)


def _server_reachable(timeout_s: float) -> bool:
    """Whether the W&B server accepts a TCP connection (wandb itself retries for minutes)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=min(timeout_s, 5.0)):
            return True
    except OSError:
        return False


def make_logger(cfg: Config, subject: SubjectDir, stage: str) -> ExperimentLogger:
    """The logger backend selected by `cfg.logger.backend`."""
    backend = cfg.logger.backend
    if backend == "wandb":
        return WandbLogger(cfg, subject, stage)
    if backend == "csv":
        return CsvLogger(Path(cfg.logger.dir) / cfg.dataset.name / subject.name / stage)
    return ExperimentLogger()
