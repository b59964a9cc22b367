"""Fingerprints of files outside the subject folder, for stage keys.

`file_fingerprint` (path, size, mtime) suits inputs whose path is part of their meaning (another
subject's tracking); `content_fingerprint` suits model files, whose path is not: it reads a fixed
sample of the content, so it costs the same on a 20 MB and on a multi-GB checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["content_fingerprint", "file_fingerprint"]


def file_fingerprint(path: Path | str) -> dict[str, Any]:
    """Cheap fingerprint of an external file: path, size and modification time."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


_SAMPLE_BYTES = 1 << 16
_SAMPLES = 16


def content_fingerprint(path: Path | str) -> str | None:
    """Fingerprint of a model file's content: its size and a hash of 16 evenly spaced 64 KiB
    blocks (the whole file when smaller than 1 MiB); None when it is absent or a folder.

    Reads at most 1 MiB whatever the file's size (a 2 GB checkpoint costs a few ms), and does
    not depend on the path or modification time, so moving or copying the assets folder re-runs
    nothing while pointing a key at another model does. An edit that keeps the size and leaves
    every sampled block alone is not seen: `force=true` re-runs a stage then.
    """
    p = Path(path)
    if not p.is_file():
        return None
    size = p.stat().st_size
    h = hashlib.blake2b(digest_size=10)
    with open(p, "rb") as f:
        if size <= _SAMPLES * _SAMPLE_BYTES:
            h.update(f.read())
        else:
            step = (size - _SAMPLE_BYTES) // (_SAMPLES - 1)
            for k in range(_SAMPLES):
                f.seek(k * step)
                h.update(f.read(_SAMPLE_BYTES))
    return f"{size}:{h.hexdigest()}"
