"""Ingest of a user's own input: a video file (any container FFmpeg reads) or a folder of images."""

from __future__ import annotations

from pathlib import Path

from prep.config import Config
from prep.datasets.base import Source, check_same_size, list_images
from prep.errors import BadConfigError, BadInputError


def source(cfg: Config, subject: str) -> Source:
    """`dataset.video=<file>` or `dataset.images=<folder>` (a folder given as video works too)."""
    ds = cfg.dataset
    if ds.video and ds.images:
        raise BadConfigError("set only one of dataset.video and dataset.images")
    given = ds.video or ds.images
    if not given:
        raise BadConfigError("dataset=custom needs dataset.video=<file> or dataset.images=<folder>")
    path = Path(given).expanduser()
    if not path.exists():
        raise BadInputError(f"input not found: {path}")
    if path.is_dir():
        images = list_images(path)
        check_same_size(images)
        return Source("custom", subject, images=images)
    if ds.images:
        raise BadInputError(f"dataset.images must be a folder, got the file {path}")
    return Source("custom", subject, video=path)
