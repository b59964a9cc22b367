"""The one progress helper used by every long loop: a tqdm bar on a terminal, silent otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _enabled() -> bool:
    if os.environ.get("AVATAR_PREP_PROGRESS") == "0":
        return False
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Wrap `iterable` in a progress bar when stderr is a terminal.

    Args:
        iterable: what to iterate.
        total: number of items, when `iterable` has no len().
        desc: short label shown before the bar.
    """
    if not _enabled():
        yield from iterable
        return
    yield from tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
