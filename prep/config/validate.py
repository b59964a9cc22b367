"""Config values checked before any stage runs: ranges, the device, and limits set by the models.

The schemas (dataclasses in this package) fix each value's type; this module fixes what the
types cannot say: a weight is not negative, a probability lies in [0, 1], a CUDA device exists.
`validate_config` runs when the job starts, `check_against_models` when the runner has opened the
model files (so ``flame.n_shape`` can be compared with the model's own component count). Each
problem is one `BadConfigError` line naming the key, the value and the allowed range.

The rules live here, apart from the schemas, so that adding a field to a schema needs no change
here unless its range matters; rules match dotted keys with shell-style wildcards.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from prep.config.core import trainer_errors
from prep.errors import BadConfigError

if TYPE_CHECKING:
    from prep.config import Config

Rule = tuple[str, Callable[[float], bool], str]


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _unit(v: float) -> bool:
    return 0 <= v <= 1


def _at_least(lo: float) -> Callable[[float], bool]:
    return lambda v: v >= lo


def _between(lo: float, hi: float) -> Callable[[float], bool]:
    return lambda v: lo <= v <= hi


# First matching rule wins, so specific keys come before wildcards. Null values are not checked.
RULES: list[Rule] = [
    ("fx", _positive, "must be a positive focal length in pixels"),
    ("fy", _positive, "must be a positive focal length in pixels"),
    ("extract_frames.fps", _positive, "must be positive (or null = native)"),
    ("extract_frames.jpeg_quality", _between(1, 100), "must be in 1..100"),
    ("extract_frames.max_frames", _at_least(1), "must be at least 1 (or null = all)"),
    ("extract_frames.start_s", _non_negative, "must be >= 0 seconds"),
    ("extract_frames.end_s", _positive, "must be > 0 seconds (or null = to the end)"),
    (
        "extract_frames.audio_rate",
        _at_least(1000),
        "must be a sample rate in Hz (or null = native)",
    ),
    ("extract_frames.image_fps", _positive, "must be positive"),
    ("detect.min_score", _unit, "must be in [0, 1]"),
    ("detect.min_iou", _unit, "must be in [0, 1]"),
    ("detect.max_side", _at_least(32), "must be at least 32 pixels"),
    ("detect.max_jump", _positive, "must be positive"),
    ("detect.chunk", _at_least(1), "must be at least 1"),
    ("detect.*", _non_negative, "must be >= 0"),
    ("crop.image_size", _at_least(16), "must be at least 16 pixels"),
    ("crop.scale", _positive, "must be positive"),
    ("crop.static_size_quantile", _between(1e-9, 1), "must be in (0, 1]"),
    ("crop.smooth_sigma*", _non_negative, "must be >= 0 frames"),
    ("crop.pad_value", _between(0, 255), "must be a grey level in 0..255"),
    ("crop.jpeg_quality", _between(1, 100), "must be in 1..100"),
    ("matting.guided_eps", _positive, "must be positive"),
    ("matting.guided_subsample", _at_least(1), "must be at least 1"),
    ("matting.temporal", _between(0, 0.999), "must be in [0, 1) (1 would freeze the matte)"),
    ("matting.clip_*", _unit, "must be in [0, 1]"),
    ("matting.backend.downsample_ratio", _between(1e-3, 1), "must be in (0, 1] (or null = auto)"),
    ("matting.backend.ref_size", _at_least(32), "must be at least 32 pixels"),
    ("matting.chunk", _at_least(1), "must be at least 1"),
    ("matting.*", _non_negative, "must be >= 0"),
    ("landmarks.backend.min_*_confidence", _unit, "must be in [0, 1]"),
    ("landmarks.chunk", _at_least(1), "must be at least 1"),
    ("landmarks.*_hz", _positive, "must be a positive frequency"),
    ("landmarks.*", _non_negative, "must be >= 0"),
    ("iris.min_eye_width_ratio", _unit, "must be in [0, 1]"),
    ("iris.*", _non_negative, "must be >= 0"),
    ("parsing.alpha_threshold", _unit, "must be in [0, 1]"),
    ("parsing.backend.size", _at_least(32), "must be at least 32 pixels"),
    ("parsing.batch_size", _at_least(1), "must be at least 1"),
    ("parsing.*", _non_negative, "must be >= 0"),
    ("albedo.backend.min_shading", _between(1e-9, 1), "must be in (0, 1]"),
    ("albedo.backend.retinex_sigmas.*", _positive, "must be positive"),
    ("albedo.backend.ddim", _at_least(1), "must be at least 1"),
    ("albedo.backend.image_interval", _at_least(1), "must be at least 1"),
    ("albedo.backend.timeout_s", _at_least(1), "must be at least 1 (or null = no limit)"),
    ("albedo.backend.batch_size", _at_least(1), "must be at least 1"),
    ("albedo.*", _non_negative, "must be >= 0"),
    ("flame.n_shape", _at_least(1), "must be at least 1"),
    ("flame.n_expr", _at_least(1), "must be at least 1"),
    ("fit_flame.w.lmk", _positive, "must be > 0: the landmark term is what drives the fit"),
    ("fit_flame.w.*", _non_negative, "must be >= 0 (0 switches the term off)"),
    ("fit_flame.charbonnier_eps_px", _positive, "must be positive"),
    ("fit_flame.min_score", _unit, "must be in [0, 1]"),
    ("fit_flame.focal_prior_distance_m", _between(0.05, 100), "must be a distance in 0.05..100 m"),
    ("fit_flame.lbfgs_lr", _positive, "must be positive"),
    ("fit_flame.gn_chunk", _at_least(1), "must be at least 1"),
    ("fit_flame.lbfgs_history", _at_least(1), "must be at least 1"),
    ("fit_flame.overlay_max_frames", _at_least(1), "must be at least 1"),
    ("fit_flame.threads", _at_least(1), "must be at least 1 (or null = torch default)"),
    ("fit_flame.photo.sizes.*", _at_least(16), "must be at least 16 pixels"),
    ("fit_flame.photo.lr*", _positive, "must be positive"),
    ("fit_flame.photo.batch_frames", _at_least(1), "must be at least 1"),
    ("fit_flame.*", _non_negative, "must be >= 0"),
    ("fit_3dmm_*lr", _positive, "must be positive"),
    ("fit_3dmm_*focal*", _positive, "must be positive"),
    ("fit_3dmm_coarse.camera_distance", _positive, "must be positive"),
    ("fit_3dmm_coarse.rescale_factor", _positive, "must be positive"),
    ("fit_3dmm_coarse.min_score", _unit, "must be in [0, 1]"),
    ("fit_3dmm_*size", _at_least(16), "must be at least 16 pixels"),
    ("fit_3dmm_*batch", _at_least(1), "must be at least 1"),
    ("fit_3dmm_fine.n_photo_vertices", _at_least(1), "must be at least 1"),
    ("fit_3dmm_*", _non_negative, "must be >= 0"),
    ("pack_lmdb.sizes.*", _at_least(16), "must be at least 16 pixels"),
    ("pack_lmdb.jpeg_quality", _between(1, 100), "must be in 1..100"),
    ("pack_lmdb.map_size_gb", _positive, "must be positive"),
    ("export.background.*", _between(0, 255), "must be an RGB value in 0..255"),
    ("export.ga_train_fraction", _between(1e-9, 1), "must be in (0, 1]"),
    ("export.nerf_val_fraction", _between(0, 0.999), "must be in [0, 1)"),
    ("export.*", _non_negative, "must be >= 0"),
    ("report.thumb_px", _at_least(16), "must be at least 16 pixels"),
    ("report.*_px", _positive, "must be positive"),
    ("report.*", _non_negative, "must be >= 0"),
    ("download.retries", _at_least(1), "must be at least 1"),
    ("download.socket_timeout_s", _positive, "must be positive"),
    ("download.crf", _between(0, 51), "must be in 0..51"),
    ("download.*", _at_least(16), "must be at least 16 pixels"),
    ("logger.init_timeout_s", _positive, "must be positive"),
]
# Numbers that may take any value (offsets, seeds, worker counts where <= 0 means "all cores").
FREE = ("seed", "cx", "cy", "crop.shift_y", "crop.increase_area", "*.workers")


def flat_items(cfg: Config) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of the typed config; list items get their index."""

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                yield from walk(f"{prefix}{f.name}.", getattr(value, f.name))
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from walk(f"{prefix}{k}.", v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                yield from walk(f"{prefix}{i}.", v)
        else:
            yield prefix[:-1], value

    yield from walk("", cfg)


def range_errors(cfg: Config) -> list[str]:
    """One message per numeric value outside its rule's range (empty when all are fine)."""
    errors = []
    for key, value in flat_items(cfg):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if any(fnmatchcase(key, p) for p in FREE):
            continue
        if not math.isfinite(value):
            errors.append(f"{key}={value} must be a finite number")
            continue
        rule = next((r for r in RULES if fnmatchcase(key, r[0])), None)
        if rule is not None and not rule[1](value):
            errors.append(f"{key}={value} {rule[2]}")
    return errors


def cross_errors(cfg: Config) -> list[str]:
    """Checks that involve two keys."""
    errors = []
    m = cfg.matting
    if m.clip_low >= m.clip_high:
        errors.append(f"matting.clip_low={m.clip_low} must be below clip_high={m.clip_high}")
    f = cfg.extract_frames
    if f.start_s is not None and f.end_s is not None and f.end_s <= f.start_s:
        errors.append(
            f"extract_frames.end_s={f.end_s} must be after extract_frames.start_s={f.start_s}"
        )
    return errors + trainer_errors(cfg.trainer)


def device_error(device: str) -> str | None:
    """Why `device` cannot be used on this machine (None when it can)."""
    if device == "cpu":
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"device={device!r} is not a torch device; use cpu, cuda or cuda:<index>"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
            return f"device={device} but torch finds no CUDA GPU here ({build}); use device=cpu"
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            return f"device={device} but this machine has {n} CUDA device(s) (0..{n - 1})"
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        return f"device={device} but MPS is not available here; use device=cpu"
    elif dev.type not in ("cuda", "mps"):
        return f"device={device}: use cpu, cuda, cuda:<index> or mps"
    return None


def validate_config(cfg: Config) -> None:
    """Raise one `BadConfigError` line for the first bad value (the count of others appended)."""
    errors = range_errors(cfg) + cross_errors(cfg)
    dev = device_error(cfg.device)
    if dev:
        errors.append(dev)
    if errors:
        more = f" (and {len(errors) - 1} more bad values)" if len(errors) > 1 else ""
        raise BadConfigError(errors[0] + more)


def check_against_models(cfg: Config, stages: list[str]) -> None:
    """Limits that the model files set, for the stages that are about to run.

    Raises:
        BadConfigError: ``flame.n_shape`` / ``n_expr`` above the FLAME model's component counts.
    """
    if "fit_flame" not in stages:
        return
    from prep.asset_checks import check_asset

    status = check_asset(cfg, cfg.flame.version)
    for key in ("n_shape", "n_expr"):
        have, want = status.facts.get(key), getattr(cfg.flame, key)
        if have is not None and want > have:
            kind = "identity" if key == "n_shape" else "expression"
            raise BadConfigError(
                f"flame.{key}={want} but {status.path.name} has {have} {kind} components; "
                f"use flame.{key}<={have}"
            )
