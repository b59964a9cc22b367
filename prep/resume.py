"""Resume bookkeeping for per-frame stages: keep finished outputs only while their inputs match.

A killed per-frame stage resumes by skipping files (or chunks) that already exist. That is only
right when those files were made from the same inputs and settings: `outputs_for` records a key
(config values, a hash of the transforms) beside the outputs and clears them when it changes.

Clearing never destroys finished work before the new work is ready: while the runner holds a
`Stash` for the stage (`replace_when_done`), every file `remove_files` takes away (and every
marker `outputs_for` rewrites) is moved into the stash instead. When the stage fails, the new,
partial outputs are removed and the stashed ones put back; when it succeeds, the stash is
deleted. An interrupt (Ctrl-C) keeps the new partial outputs so the next run resumes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from prep.io.files import TMP_PREFIX, clean_temp_files, load_npz, read_json, save_npz, write_json

log = logging.getLogger(__name__)


class Stash:
    """Old outputs moved aside while a stage makes new ones (see `replace_when_done`).

    Args:
        folder: where moved files go; created on first use, deleted by `discard`/`restore`.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.moved: list[tuple[Path, Path]] = []  # (original path, stashed path)
        self.cleared: set[Path] = set()  # folders whose files were all taken away
        self.markers: dict[Path, bytes | None] = {}  # marker file -> content before the stage

    def take(self, path: Path) -> None:
        """Move `path` into the stash (it is gone from its place until `restore`)."""
        dest = self.folder / f"{len(self.moved):07d}-{path.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        self.moved.append((path, dest))

    def note_marker(self, marker: Path) -> None:
        """Remember a resume marker's content before it is rewritten."""
        if marker not in self.markers:
            self.markers[marker] = marker.read_bytes() if marker.exists() else None

    def restore(self) -> int:
        """Remove what the failed stage wrote in cleared folders; put the old outputs back."""
        for folder in self.cleared:
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.is_file():
                        p.unlink()
        for orig, dest in reversed(self.moved):
            orig.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dest, orig)
        for marker, content in self.markers.items():
            if content is None:
                marker.unlink(missing_ok=True)
            else:
                marker.write_bytes(content)
        n = len(self.moved)
        self.discard()
        return n

    def discard(self) -> None:
        """Delete the stashed files (the new outputs are complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()  # the stashes' folder, when no other stash is in it
        self.moved.clear()


class _Active:
    """The stash of the stage running in this process (one stage at a time; a plain holder
    rather than a context variable so that a stage's worker threads see it too)."""

    stash: Stash | None = None

    @classmethod
    def get(cls) -> Stash | None:
        return cls.stash


_ACTIVE = _Active


@contextlib.contextmanager
def replace_when_done(folder: Path) -> Iterator[Stash]:
    """Within this block, outputs removed through `remove_files` wait in a stash at `folder`.

    On an exception the stage's partial new outputs are removed and the old ones restored; on
    success (and on an interrupt, which keeps the new outputs for resuming) the stash is deleted.
    A stash left by a killed run is deleted first: that run had already replaced its outputs.
    """
    shutil.rmtree(folder, ignore_errors=True)
    stash, outer = Stash(folder), _Active.stash
    _Active.stash = stash
    try:
        yield stash
    except Exception:
        n = stash.restore()
        if n:
            log.info("stage failed: its %d previous outputs were put back", n)
        raise
    finally:
        _Active.stash = outer
        stash.discard()


def remove_files(folder: Path, which: Callable[[os.DirEntry], bool] | None = None) -> int:
    """Remove the files directly in `folder` (those `which` accepts); returns how many.

    Inside `replace_when_done` they are moved to the stash instead, so a failing stage gives them
    back. Leftover temp files of killed runs are deleted for good either way.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stash, n = _ACTIVE.get(), 0
    entries = [e for e in os.scandir(folder) if e.is_file()]
    for e in entries:
        if which is not None and not which(e):
            continue
        if stash is None:
            os.unlink(e.path)
        else:
            stash.take(Path(e.path))
        n += 1
    if stash is not None and which is None:
        stash.cleared.add(folder)
    return n


def remove_file(path: Path) -> None:
    """Remove one output file (stashed inside `replace_when_done`, like `remove_files`)."""
    stash = _ACTIVE.get()
    if not path.is_file():
        return
    if stash is None:
        path.unlink()
    else:
        stash.take(path)


def write_marker(marker: Path, key: Any) -> None:
    """Write a resume marker; a stash remembers the old one so a failed stage restores it."""
    stash = _ACTIVE.get()
    if stash is not None:
        stash.note_marker(marker)
    write_json(marker, key)


def removed_all(folders: Iterable[Path]) -> int:
    """`remove_files` on every folder; returns the total."""
    return sum(remove_files(f) for f in folders)


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
    for folder in folders:
        clean_temp_files(folder)  # half-written files of a killed run
    n = 0
    if force or old != key:
        n = removed_all(folders)
        if n:
            why = "force=true" if old == key else "they were made with other inputs or settings"
            kept = " (kept aside until the new ones are ready)" if _ACTIVE.get() else ""
            log.info("removed %d previous outputs%s: %s", n, kept, why)
    write_marker(marker, key)
    return n


def manifest_digest(manifest: Path) -> str | None:
    """Short hash of an upstream stage's manifest (None when absent): changes whenever that
    stage re-ran, so outputs derived from its files are not reused across its runs."""
    if not manifest.exists():
        return None
    return hashlib.sha1(manifest.read_bytes()).hexdigest()[:16]


# ---- chunked outputs of per-frame stages ----------------------------------------------------


def frame_chunks(
    n_frames: int, chunk: int = 256, done: Callable[[int, int], bool] | None = None
) -> Iterator[tuple[int, int]]:
    """Yield ``(i0, i1)`` ranges covering ``range(n_frames)``, skipping those `done` reports."""
    for i0 in range(0, n_frames, chunk):
        i1 = min(i0 + chunk, n_frames)
        if done is None or not done(i0, i1):
            yield i0, i1


class ChunkStore:
    """Per-chunk npz files under one folder, so a killed per-frame stage resumes by chunk.

    Every chunk ``[i0, i1)`` is written atomically as ``<dir>/<i0:06d>-<i1:06d>.npz``; `merge`
    concatenates the chunks' arrays along axis 0 in frame order.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def _path(self, i0: int, i1: int) -> Path:
        return self.folder / f"{i0:06d}-{i1:06d}.npz"

    def has(self, i0: int, i1: int) -> bool:
        return self._path(i0, i1).exists()

    def write(self, i0: int, i1: int, **arrays: np.ndarray) -> None:
        for k, a in arrays.items():
            if len(a) != i1 - i0:
                raise ValueError(f"chunk array {k!r} has {len(a)} rows for frames {i0}:{i1}")
        save_npz(self._path(i0, i1), **arrays)

    def clear(self) -> None:
        if self.folder.is_dir():
            for p in self.folder.glob("*.npz"):
                p.unlink()

    def merge(self, n_frames: int | None = None) -> dict[str, np.ndarray]:
        """Concatenate all chunks in order; checks they tile ``range(n_frames)`` without gaps."""
        paths = sorted(p for p in self.folder.glob("*.npz") if not p.name.startswith(TMP_PREFIX))
        parts: dict[str, list[np.ndarray]] = {}
        expect = 0
        for p in paths:
            i0, i1 = (int(x) for x in p.stem.split("-"))
            if i0 != expect:
                raise ValueError(f"chunk store {self.folder} has a gap at frame {expect}")
            expect = i1
            for k, a in load_npz(p).items():
                parts.setdefault(k, []).append(a)
        if n_frames is not None and expect != n_frames:
            raise ValueError(f"chunk store {self.folder} covers {expect} of {n_frames} frames")
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}
