"""Open MediaPipe solution graphs with their native start-up chatter sent to our log.

MediaPipe's TFLite and absl code write start-up notes to file descriptor 2 from graph threads
("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires a model with a single
signature"); `GLOG_minloglevel` does not reach them. `open_graph` points fd 2 at a temporary
file while the graph is built and run once on a blank frame (by then every calculator has
opened), then logs what was captured: at debug level, or as a warning when opening failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import numpy as np

log = logging.getLogger(__name__)

# Native libraries (mediapipe's TFLite/absl) print info and warnings to stderr; keep errors only.
# The entry point sets them for the whole job (`prep.cli.precheck`); spawned workers set them again.
NATIVE_QUIET_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}


class _Graph(Protocol):
    def process(self, image: np.ndarray) -> Any: ...


G = TypeVar("G", bound=_Graph)


@contextlib.contextmanager
def native_stderr_to_log(logger: logging.Logger = log) -> Iterator[None]:
    """Capture what native code writes to fd 2 inside the block and log it line by line.

    Python writes to `sys.stderr` inside the block are captured too, so keep it short.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            level = logging.WARNING if failed else logging.DEBUG
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip():
                    logger.log(level, "mediapipe: %s", line.strip())


def open_graph(factory: Callable[[], G], warmup_hw: tuple[int, int] = (64, 64)) -> G:
    """Build a solution graph (e.g. ``lambda: FaceDetection(...)``) and run it once, quietly.

    Args:
        factory: builds the graph; its ``process`` takes an RGB uint8 (H, W, 3) frame.
        warmup_hw: size of the blank frame it is run on once.
    """
    with native_stderr_to_log():
        graph = factory()
        graph.process(np.zeros((*warmup_hw, 3), np.uint8))
    return graph
