"""Kill a pipeline process for real, once it has written some of a stage's outputs."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.conftest import REPO


def kill_when(cmd: list[str], ready: Callable[[], bool], timeout_s: float = 240.0) -> None:
    """Run `cmd` in the repository and SIGKILL it as soon as `ready()` is true.

    Skips the calling test when the process finishes first (a machine too fast to catch it).
    """
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.002)
        if proc.poll() is not None:
            pytest.skip("the stage finished before it could be killed (machine too fast)")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
