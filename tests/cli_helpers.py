"""Running launch.py as a user does, and reading its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Makes every file write under a folder fail as on a full disk (ENOSPC), then runs launch.py.
FULL_DISK = """
import errno, pathlib, runpy, sys
folder = sys.argv.pop(1)
real_write_bytes = pathlib.Path.write_bytes
def write_bytes(self, data):
    if str(self).startswith(folder):
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_write_bytes(self, data)
pathlib.Path.write_bytes = write_bytes
sys.argv[0] = {launch!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def launch(
    *args: str, cwd: Path = REPO, timeout: int = 300, full_disk: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``python launch.py *args``; with `full_disk`, writes under that folder fail."""
    env = {**os.environ, "AVATAR_PREP_PROGRESS": "0", "WANDB_MODE": "offline"}
    cmd = [sys.executable, str(REPO / "launch.py"), *args]
    if full_disk is not None:
        code = FULL_DISK.format(launch=str(REPO / "launch.py"))
        cmd = [sys.executable, "-c", code, str(full_disk), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]


def one_error_line(proc: subprocess.CompletedProcess, alone: bool = True) -> str:
    """The single ``error: ...`` line of a run that failed with exit code 2 and no traceback.

    Args:
        proc: the finished run.
        alone: stderr holds nothing else (errors found before any stage ran); otherwise the
            progress log may precede the error line, which must come last.
    """
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr[-3000:]
    assert len(error_lines(proc)) == 1, proc.stderr[-3000:]
    assert len(lines) == 1 or not alone, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[-1]
