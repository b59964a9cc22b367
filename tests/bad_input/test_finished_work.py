"""Finished work survives bad input: a broken source video or a broken model file is refused with
one line before anything is removed, and a stage that fails midway gives its old outputs back.

Issue 16 items 3 and 4: on the old engine, `dataset.video=<empty file>` deleted frames/ and the
extract manifest before opening the file, and `matting=rvm` with random bytes for the checkpoint
deleted the 40 finished mattes before loading it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.bad_input.conftest import CLIP
from tests.bad_input.media import corrupt_file, empty_file, truncated_copy
from tests.cli_helpers import launch, one_error_line


def tree_digest(root: Path) -> dict[str, str]:
    """Content hash of every file under a subject folder (the lock file aside)."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _bad_video(kind: str, folder: Path) -> Path:
    if kind == "empty":
        return empty_file(folder / "empty.mp4")
    if kind == "corrupt":
        return corrupt_file(folder / "corrupt.mp4")
    return truncated_copy(CLIP, folder / "truncated.mp4")  # decodes 144 of its 500 frames


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("empty", "is empty (0 bytes)"),
        ("corrupt", "cannot read"),
        ("truncated", "decoded 144 of the 500 frames"),
    ],
)
def test_bad_video_keeps_finished_frames(finished, tmp_path, kind, says):
    subject = finished.copy(tmp_path)
    before = tree_digest(subject)
    video = _bad_video(kind, tmp_path)
    args = [*finished.overrides(tmp_path / "work"), f"dataset.video={video}"]
    line = one_error_line(launch(*args, "stage=extract_frames"), alone=False)
    assert says in line and str(video) in line
    assert tree_digest(subject) == before  # frames, manifest and every later output intact
    # and the finished subject is still finished under its own source
    proc = launch(*finished.overrides(tmp_path / "work"), "stage=fit_flame")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "running" not in proc.stdout and tree_digest(subject) == before


def test_truncated_video_with_force_replaces_and_says_so(finished, tmp_path):
    subject = finished.copy(tmp_path)
    video = _bad_video("truncated", tmp_path)
    args = [*finished.overrides(tmp_path / "work"), f"dataset.video={video}", "force=true"]
    proc = launch(*args, "stage=extract_frames")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decoded 144 of the 500 frames its header announces" in proc.stdout
    assert len(list((subject / "frames").iterdir())) == 144
    assert not (subject / ".stash").exists()


@pytest.mark.parametrize(
    ("backend", "stage", "folders"),
    [
        ("matting=rvm", "matting", ["matting/alpha"]),
        ("parsing=bisenet", "parsing", ["parsing/labels", "mask", "image"]),
    ],
)
def test_corrupt_checkpoint_keeps_outputs(finished, tmp_path, backend, stage, folders):
    subject = finished.copy(tmp_path)
    before = tree_digest(subject)
    n = len(list((subject / "frames").iterdir()))
    assert sum(len(list((subject / f).iterdir())) for f in folders) == n * len(folders)
    asset = "rvm_mobilenetv3" if stage == "matting" else "bisenet"
    junk = corrupt_file(tmp_path / f"{asset}.pth")
    args = [*finished.overrides(tmp_path / "work"), backend, f"assets.{asset}={junk}"]
    line = one_error_line(launch(*args, f"stage={stage}"))
    assert f"{asset}: unreadable checkpoint" in line and str(junk) in line
    assert tree_digest(subject) == before
    # stage=all asked for the same backend: the other stages' state is kept, exit is non-zero
    proc = launch(*args, "stage=all")
    assert proc.returncode == 2 and f"stage {stage} could not run" in proc.stderr
    after = tree_digest(subject)  # stages that do not need it may run (report): add, not change
    assert {k: after.get(k) for k in before} == before
