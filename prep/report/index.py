"""The dataset index page across subjects: <work_dir>/<dataset>/index.html.

Each subject's report stage writes ``report/summary.json`` (its headline numbers); the index is
rebuilt from all of them under a lock, so subjects finishing at once in a multirun never lose a
row.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from prep.io.files import nan_for_null, read_json, write_bytes
from prep.report.page import index_page

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
# Headline keys summaries written before a rename carry, and their names now.
OLD_HEADLINE_KEYS = {"jitter_px_median": "lmk_midpoint_dev_px_median"}


@contextmanager
def _locked(folder: Path):
    fd = os.open(folder / ".index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def subject_rows(dataset_dir: Path) -> list[dict]:
    """Summaries of every subject under `dataset_dir` that has a report, sorted by name."""
    rows = []
    for p in sorted(dataset_dir.glob(f"*/report/{SUMMARY}")):
        try:
            row = read_json(p)
            headline = nan_for_null(row.get("headline"))
            headline = {OLD_HEADLINE_KEYS.get(k, k): v for k, v in headline.items()}
            rows.append(row | {"headline": headline})
        except ValueError:
            log.warning("unreadable report summary %s", p)
    return rows


def write_index(dataset_dir: Path, dataset: str) -> tuple[Path, list[dict]]:
    """Rebuild ``<dataset_dir>/index.html``; returns its path and the rows it shows."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    with _locked(dataset_dir):
        rows = subject_rows(dataset_dir)
        path = dataset_dir / "index.html"
        write_bytes(path, index_page(dataset, rows).encode("utf-8"))
    return path, rows
