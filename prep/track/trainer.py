"""The one Lightning Trainer factory of the trackers (FLAME, BFM fine).

`make_trainer` turns the `trainer` config group and the top-level `device` into a quiet Trainer:
no checkpoints, no validation, no Lightning progress bar (the project has its own), every step
logged (a tracker phase has ~10 steps, so Lightning's default of one log line per 50 steps would
log nothing).
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch

from prep.config.core import TrainerConfig, trainer_errors
from prep.errors import BadConfigError

PRECISIONS = {
    "32-true": torch.float32,
    "32": torch.float32,
    "64-true": torch.float64,
    "64": torch.float64,
}
_QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")
_QUIET_WARNINGS = (
    r".*does not have many workers",  # the trackers' batches are tensors already in memory
    r".*isinstance\(treespec, LeafSpec\)",  # a torch-internal deprecation Lightning triggers
)


def accelerator_devices(cfg: TrainerConfig, device: str) -> tuple[str, list[int] | int]:
    """Lightning's ``accelerator`` and ``devices`` for `cfg` and a torch device string."""
    errors = trainer_errors(cfg)
    if errors:
        raise BadConfigError(errors[0])
    is_cuda = device.startswith("cuda")
    accelerator = cfg.accelerator or ("gpu" if is_cuda else "cpu")
    if accelerator != "cpu" and is_cuda and ":" in device and cfg.devices is None:
        return accelerator, [int(device.split(":", 1)[1])]
    return accelerator, 1


def precision_dtype(precision: str) -> torch.dtype:
    """The float dtype of a Lightning precision (a `prep.config.core.Precision`)."""
    return PRECISIONS[precision]


def make_trainer(
    cfg: TrainerConfig | None,
    device: str = "cpu",
    max_steps: int = -1,
    max_epochs: int = 1,
    logger=None,
    callbacks: list | None = None,
) -> L.Trainer:
    """A Trainer for one tracker fit.

    Args:
        cfg: the trainer config (None = defaults).
        device: the top-level torch device (cpu, cuda, cuda:1); `cfg` may override it.
        max_steps: optimiser steps (-1 = bounded by `max_epochs`).
        max_epochs: passes over the data loader.
        logger: a Lightning logger, or None for none.
        callbacks: Lightning callbacks (e.g. the tracker's phase schedule).
    """
    cfg = cfg or TrainerConfig()
    accelerator, devices = accelerator_devices(cfg, device)
    for name in _QUIET_LOGGERS:  # device banners and tips on every Trainer
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        # a Precision (a str enum) whose values are Lightning's precision strings
        precision=cfg.precision,  # type: ignore[arg-type]
        deterministic=cfg.deterministic,
        max_steps=max_steps,
        max_epochs=max_epochs,
        logger=logger if logger is not None else False,
        log_every_n_steps=1,
        callbacks=callbacks or [],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
