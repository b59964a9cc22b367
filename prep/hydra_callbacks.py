"""Hydra callbacks: a summary of which jobs of a multirun failed and why."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from prep.io.files import write_json

log = logging.getLogger("prep")

# Jobs of this process's multiruns that failed (read by launch.py to set the exit status).
FAILED_JOBS: list[str] = []


class SweepSummary(Callback):
    """At the end of a multirun, list every job's outcome from its status.json."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = []
        for status_file in sorted(sweep_dir.glob("*/status.json")):
            status = json.loads(status_file.read_text())
            rows.append((status_file.parent.name, status))
        if not rows:
            return
        failed = [(name, s) for name, s in rows if not s["ok"]]
        log.info(
            "multirun: %d jobs, %d ok, %d failed", len(rows), len(rows) - len(failed), len(failed)
        )
        for name, s in failed:
            log.error("  failed %s: %s", " ".join(s["overrides"]) or name, s["error"])
            FAILED_JOBS.append(name)
        summary = [{"job": name, **s} for name, s in rows]
        write_json(sweep_dir / "summary.json", summary)
