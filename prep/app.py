"""Run one Hydra job: resolve the subject, run the plan, print a summary; errors become one line.

Library code raises `PrepError` subclasses; this module is the only place that turns them into a
single `error: ...` line on stderr (the full traceback with debug=true). In a multirun a failed
subject does not stop the sweep: its error is recorded in the job's folder (`status.json`) and
`prep.hydra_callbacks.SweepSummary` lists the failures at the end.
"""

from __future__ import annotations

import errno
import logging
import math
import sys
from pathlib import Path

from omegaconf import DictConfig

from prep.config import Config, to_typed
from prep.errors import PrepError, UnmetRequestError
from prep.io.files import write_json
from prep.subject import subject_dir

log = logging.getLogger("prep")


def validate(cfg: Config) -> None:
    """Checks that the schema types cannot express (`prep.config.validate`), before any work."""
    from prep.config.validate import validate_config

    validate_config(cfg)


def run(cfg: Config) -> float | None:
    """Run the configured stage(s) on the configured subject; returns the headline metric."""
    from prep.runner import asset_waiting_lines, run_plan

    validate(cfg)
    if cfg.stage.name == "assets":
        print_asset_table(cfg)
        return None
    subject = subject_dir(cfg)
    with subject.lock(wait=cfg.lock_wait):
        outcome = run_plan(cfg, subject)
    log.info(
        "subject %s: ran %s; skipped %s", subject.root, outcome.ran or "-", outcome.skipped or "-"
    )
    for line in asset_waiting_lines(outcome):
        log.warning("waiting  %s", line)
    if outcome.unmet:
        # A script must see that requested work was not done; the demo's waits are not requests.
        stage, why = next(iter(outcome.unmet.items()))
        more = f" (and {len(outcome.unmet) - 1} more)" if len(outcome.unmet) > 1 else ""
        raise UnmetRequestError(f"stage {stage} could not run{more}: {why}")
    return outcome.headline()


def print_asset_table(cfg: Config) -> None:
    from prep.asset_checks import asset_table

    rows = asset_table(cfg)
    width = max(len(r[0]) for r in rows)
    print(f"{'asset':<{width}}  {'status':<8}  path  (used by): what was found")
    for name, status, path, used_by, detail in rows:
        print(f"{name:<{width}}  {status:<8}  {path}  ({used_by}): {detail}")


def _spawn_safe_start_method() -> None:
    """In a joblib (loky) worker the default start method is "loky", which a process started
    with spawn cannot restore (it crashes before running); reset it so stages may use pools."""
    import multiprocessing

    if multiprocessing.get_start_method(allow_none=True) == "loky":
        multiprocessing.set_start_method("spawn", force=True)


def main(dcfg: DictConfig) -> float | None:
    """Entry from launch.py. Returns the headline metric (a multirun sweeper minimises it)."""
    _spawn_safe_start_method()
    multirun = _is_multirun()
    debug = bool(dcfg.get("debug", False))
    try:
        value = run(to_typed(dcfg))
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept and the next run resumes", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        message = one_line_error(e)
        # A bug (not bad input) keeps its traceback, except in a sweep, where the others go on.
        if debug or (message is None and not multirun):
            raise
        if message is None:
            log.exception("unexpected error")
            message = f"unexpected {type(e).__name__}: {e} (traceback in the job log)"
        _record_status(ok=False, error=message)
        print(f"error: {message}", file=sys.stderr)
        if multirun:
            return math.inf
        sys.exit(2)
    _record_status(ok=True, value=value)
    return value


def one_line_error(e: BaseException) -> str | None:
    """The user-facing line for an expected failure, or None for a bug."""
    if isinstance(e, PrepError):
        return str(e)
    if isinstance(e, OSError):  # read-only folder, full disk: name the path; done work is kept
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        if e.errno == errno.ENOSPC:
            return (
                f"no space left on the device writing {e.filename or 'an output'}; free some "
                "space (or set work_dir=<a larger disk>) and re-run: finished outputs are kept"
            )
        return f"cannot write output{where}: {e.strerror or e}"
    return None


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_status(ok: bool, value: float | None = None, error: str = "") -> None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if not hc.runtime.output_dir:
        return
    status = {"ok": ok, "value": value, "error": error, "overrides": list(hc.overrides.task)}
    write_json(Path(hc.runtime.output_dir) / "status.json", status)
