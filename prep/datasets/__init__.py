"""Dataset ingests: one per input kind, each returning the same typed `Source`.

``resolve_source(cfg, subject)`` dispatches on ``dataset.name``; stage extract_frames turns the
`Source` into frames/, meta/video.json and audio.wav the same way for every dataset.
"""

from __future__ import annotations

from collections.abc import Callable

from prep.config import Config
from prep.datasets import custom, demo, hdtf, imported, insta
from prep.datasets.base import Intrinsics, Source
from prep.errors import BadConfigError

INGESTS: dict[str, Callable[[Config, str], Source]] = {
    "custom": custom.source,
    "demo": demo.source,
    "hdtf": hdtf.source,
    "insta": insta.source,
    # another tracker's output, imported (prep.importers; stage import_tracking)
    "imavatar": imported.source,
    "vhap": imported.source,
    "metrical": imported.source,
    "insta_tracked": imported.source,
}


def resolve_source(cfg: Config, subject: str) -> Source:
    """Describe where subject `subject`'s frames come from under `cfg.dataset`."""
    try:
        ingest = INGESTS[cfg.dataset.name]
    except KeyError:
        raise BadConfigError(
            f"unknown dataset {cfg.dataset.name!r}; known: {', '.join(sorted(INGESTS))}"
        ) from None
    return ingest(cfg, subject)


__all__ = ["INGESTS", "Intrinsics", "Source", "resolve_source"]
