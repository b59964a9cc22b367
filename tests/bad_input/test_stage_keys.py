"""A stage's key covers what changes its output and nothing else (issue 16 item 5, issue 12).

On the old engine fx fy cx cy were in every stage's key, so the mission's own command
(`stage=fit_flame fx=1539.67` on a finished subject) re-extracted the frames and re-ran every
stage; and the model files were in no key, so pointing `assets.flame2020` at another file
re-ran nothing.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil

import pytest

from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.conftest import compose

UPSTREAM = {"extract_frames", "detect", "crop", "matting", "landmarks", "parsing", "iris"}


def _run(finished, work, *extra):
    cfg = compose(*finished.overrides(work), "stage=fit_flame", *extra)
    return run_plan(cfg, SubjectDir(work / "custom" / "fin"))


def test_new_intrinsics_rerun_only_the_fit(finished, tmp_path):
    finished.copy(tmp_path)
    work = tmp_path / "work"
    out = _run(finished, work, "fx=1539.67")
    assert out.ran == ["fit_flame"] and set(out.skipped) == UPSTREAM
    out = _run(finished, work, "fx=1539.67")
    assert out.ran == []  # the new key is recorded: done
    out = _run(finished, work, "fx=1539.67", "cx=300")
    assert out.ran == ["fit_flame"]


def test_intrinsics_reach_the_stages_that_read_the_fit(finished, tmp_path):
    """albedo uses the FLAME fit and export reads it: a new fx re-runs them, nothing upstream."""
    finished.copy(tmp_path)
    work = tmp_path / "work"
    plan = "dataset.plan=[extract_frames,detect,crop,matting,landmarks,parsing,iris,fit_flame,albedo,export]"  # noqa: E501
    cfg = compose(*finished.overrides(work), "stage=all", plan)
    subject = SubjectDir(work / "custom" / "fin")
    assert run_plan(cfg, subject).ran == ["albedo", "export"]
    cfg = compose(*finished.overrides(work), "stage=all", plan, "fx=1200")
    out = run_plan(cfg, subject)
    assert out.ran == ["fit_flame", "albedo", "export"] and set(out.skipped) == UPSTREAM


def test_another_model_file_reruns_its_stage(finished, tmp_path):
    finished.copy(tmp_path)
    work = tmp_path / "work"
    model = finished.assets["flame2020"]
    # The same bytes elsewhere (a moved or copied assets folder, new mtime): nothing re-runs.
    moved = tmp_path / "moved" / model.name
    moved.parent.mkdir()
    shutil.copyfile(model, moved)
    os.utime(moved, (1, 1))
    assert _run(finished, work, f"assets.flame2020={moved}").ran == []
    # Another model at that path: the fit re-runs, nothing upstream does.
    from tests.fixtures.synthetic_flame import build_tiny_flame_dict, write_flame_pickle

    write_flame_pickle(moved, build_tiny_flame_dict(seed=7))
    out = _run(finished, work, f"assets.flame2020={moved}")
    assert out.ran == ["fit_flame"] and set(out.skipped) == UPSTREAM


def test_renamed_sections_keep_their_stage_keys():
    """Each stage's settings moved to the section named after it (issue 14: frames ->
    extract_frames, tracker -> fit_flame, lmdb -> pack_lmdb) and their choices became enums with
    the same values: the keys are those main computed before (c95e9b4, this config), so those
    finished stages still skip. (fit_flame's is the same too, but its defaults are being tuned.)
    The report's key differs from c95e9b4's on purpose: its flag setting was renamed with the metric
    it thresholds (report.jitter_flag_px -> report.lmk_midpoint_dev_flag_px), so a finished report
    is rewritten once (seconds) with the new metric names."""
    from prep.pipeline import config_hash, get_stage

    cfg = compose("dataset=custom", "dataset.video=/x.mp4")
    stages = ("extract_frames", "crop", "pack_lmdb", "export", "report", "download")
    assert {s: config_hash(cfg, get_stage(s)) for s in stages} == {
        "extract_frames": "8b618ab1f865cf17",
        "crop": "656ee18d0ee74689",
        "pack_lmdb": "b4023185eb42f2cc",
        "export": "38f4f83d06e1fb5e",
        "report": "2e3c653846d10e0f",
        "download": "3097794c9656068d",
    }


class _CountingFile:
    """Wraps a binary file, recording the size of every read."""

    def __init__(self, fh, reads: list[int]):
        self.fh, self.reads = fh, reads

    def read(self, n: int = -1) -> bytes:
        self.reads.append(n)
        return self.fh.read(n)

    def seek(self, pos: int) -> int:
        return self.fh.seek(pos)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def test_model_fingerprint_reads_little_of_a_large_file(tmp_path, monkeypatch):
    """A multi-GB checkpoint costs 16 reads of 64 KiB, whatever its size."""
    from prep.io import fingerprint as pipeline

    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(3 << 30)  # 3 GiB, sparse
    reads: list[int] = []

    def counting_open(*args, **kwargs) -> _CountingFile:
        return _CountingFile(open(*args, **kwargs), reads)  # noqa: SIM115 (closed by __exit__)

    monkeypatch.setattr(pipeline, "open", counting_open, raising=False)
    fp = pipeline.content_fingerprint(big)
    assert fp.startswith(f"{3 << 30}:") and len(reads) == 16 and max(reads) == 1 << 16
    with open(big, "r+b") as f:  # a change inside a sampled block changes the fingerprint
        f.write(pickle.dumps("another model"))
    assert pipeline.content_fingerprint(big) != fp


def _hashes(*overrides: str) -> dict[str, str]:
    """Every built-in stage's config hash under `overrides`."""
    from prep.pipeline import BUILTIN_STAGES, config_hash, get_stage

    cfg = compose("dataset=custom", "logger=none", *overrides)
    return {name: config_hash(cfg, get_stage(name)) for name in BUILTIN_STAGES}


def _changed(*overrides: str, base: tuple[str, ...]) -> set[str]:
    before, after = _hashes(*base), _hashes(*base, *overrides)
    return {name for name in before if before[name] != after[name]}


def test_how_the_frames_relate_is_in_the_keys_of_the_stages_it_changes():
    """dataset.sequence changes detect (which face, the decision) and every stage that asks
    `is_sequence` (crop per image, matte smoothing, landmark filter, fit smoothness), never the
    frames; dataset.same_person changes only the fit of a photo collection."""
    photos = ("dataset.images=/data/photos",)
    seq = {"detect", "crop", "matting", "landmarks", "fit_flame"}
    assert _changed("dataset.sequence=false", base=photos) == seq
    assert _changed("dataset.sequence=true", base=photos) == seq  # null: detect judges
    assert _changed("dataset.same_person=true", base=photos) == {"fit_flame"}
    video = ("dataset.video=/data/clip.mp4",)
    assert _changed("dataset.sequence=false", base=video) == seq
    assert _changed("dataset.sequence=true", base=video) == set()  # a video is a sequence
    assert _changed("dataset.same_person=true", base=video) == set()  # one identity anyway
    # the source as typed: its fingerprint holds the resolved path, size and mtime
    assert _changed("dataset.video=/data/./clip.mp4", base=video) == set()


@pytest.mark.slow
def test_declaring_a_collection_redoes_the_face_stages_not_the_frames(finished, tmp_path, caplog):
    """On a finished video: dataset.sequence=false re-runs detect onwards (not the frames), then
    dataset.same_person=true only the fit, which says why it writes no flame_params.json."""
    finished.copy(tmp_path)
    work = tmp_path / "work"
    video = finished.video
    # said out loud what was already so, or spelled another way: nothing to redo
    spelled = video.parent / "." / video.name
    out = _run(
        finished,
        work,
        "dataset.sequence=true",
        "dataset.same_person=true",
        f"dataset.video={spelled}",
    )
    assert out.ran == []
    out = _run(finished, work, "dataset.sequence=false")
    assert out.skipped == ["extract_frames"]  # detect's chunks are reused, the frames kept
    assert set(out.ran) == UPSTREAM - {"extract_frames"} | {"fit_flame"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="prep.stages.fit_flame"):
        out = _run(finished, work, "dataset.sequence=false", "dataset.same_person=true")
    assert out.ran == ["fit_flame"] and set(out.skipped) == UPSTREAM
    (said,) = [r.getMessage() for r in caplog.records if "flame_params.json" in r.getMessage()]
    assert "a photo collection with a crop per image" in said and "crop.mode" not in said
