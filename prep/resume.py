"""Resume bookkeeping for per-frame stages: keep finished outputs only while their inputs match.

A killed per-frame stage resumes by skipping files (or chunks) that already exist. That is only
right when those files were made from the same inputs and settings: `outputs_for` records a key
(config values, a hash of the transforms) beside the outputs and clears them when it changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from prep.io.files import clean_temp_files, read_json, write_json

log = logging.getLogger(__name__)


def array_digest(*arrays: np.ndarray) -> str:
    """Short hash of arrays' bytes (for keys that depend on computed transforms)."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def outputs_for(marker: Path, key: dict[str, Any], folders: list[Path], force: bool) -> int:
    """Make `folders` hold only outputs made under `key`.

    Args:
        marker: JSON file (outside `folders`) recording the key of the existing outputs.
        key: JSON-serialisable description of everything the outputs depend on.
        folders: per-frame output folders (files directly inside are deleted on a mismatch).
        force: delete existing outputs regardless.

    Returns:
        Number of files deleted.
    """
    key = json.loads(json.dumps(key, sort_keys=True, default=str))
    old = read_json(marker) if marker.exists() else None
    n = 0
    if force or old != key:
        for folder in folders:
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.is_file():
                        p.unlink()
                        n += 1
        if n:
            why = "force=true" if old == key else "they were made with other inputs or settings"
            log.info("removed %d previous outputs: %s", n, why)
    for folder in folders:
        clean_temp_files(folder)  # half-written files of a killed run
    write_json(marker, key)
    return n


def manifest_digest(manifest: Path) -> str | None:
    """Short hash of an upstream stage's manifest (None when absent): changes whenever that
    stage re-ran, so outputs derived from its files are not reused across its runs."""
    if not manifest.exists():
        return None
    return hashlib.sha1(manifest.read_bytes()).hexdigest()[:16]
