"""Ingest of another tracker's folder (``dataset=imavatar|vhap|metrical|insta_tracked``).

The subject is ``<dataset.root>/<subject>``. Its frames are already the face crop, so they are
taken as they are (identity crop: detect, crop and matting are not run); stage import_tracking
then reads the rest of the folder (`prep.importers`).
"""

from __future__ import annotations

from pathlib import Path

from prep.config import Config
from prep.datasets.base import Source, check_same_size
from prep.errors import BadConfigError, BadInputError


def source(cfg: Config, subject: str) -> Source:
    """The frames of the folder to import, in the importer's order."""
    from prep.importers import has_alpha, import_frame_files

    kind = cfg.dataset.name
    if not cfg.dataset.root:
        raise BadConfigError(f"dataset={kind} needs dataset.root=<folder holding the subjects>")
    folder = Path(cfg.dataset.root).expanduser() / subject
    if not folder.is_dir():
        raise BadInputError(f"{kind} subject folder not found: {folder}")
    images = import_frame_files(kind, folder)
    check_same_size(images)
    return Source(kind, subject, images=images, alpha=has_alpha(images[0]), provides_crop=True)
