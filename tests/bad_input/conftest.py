"""A finished subject shared by the bad-input tests: a 40-frame real clip taken through every
stage up to fit_flame (synthetic FLAME model) once per session; each test works on a copy."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, compose
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401

CLIP = SHARED_DATA / "clips" / "c03_german_anchor_512_20s.mp4"
N_FRAMES = 40
LANDMARK_CHUNK = 16  # three landmark chunks, so a kill can land between two (cases.py)


@dataclass
class Finished:
    """A finished subject to copy: `args` are the launch.py overrides that made it."""

    root: Path  # folder holding the clip, the assets and work/
    video: Path
    assets: dict[str, Path]
    args: list[str]

    def copy(self, dest: Path) -> Path:
        """A copy of work/ under `dest`; returns the copied subject folder."""
        shutil.copytree(self.root / "work", dest / "work", symlinks=True)
        return dest / "work" / "custom" / "fin"

    def overrides(self, work: Path) -> list[str]:
        return [f"work_dir={work}", *self.args]


@pytest.fixture(scope="session")
def finished(tmp_path_factory, tiny_flame_assets) -> Finished:  # noqa: F811
    """extract_frames .. fit_flame done on the first 1.6 s of clip c03 (40 frames)."""
    if not CLIP.exists():
        pytest.skip(f"test media not present: {CLIP}")
    from prep.runner import run_plan
    from prep.subject import SubjectDir
    from tests.bad_input.media import faststart_copy

    root = tmp_path_factory.mktemp("finished")
    video = faststart_copy(CLIP, root / "fin.mp4", max_s=N_FRAMES / 25)
    keys = ("flame2020", "flame_lmk_embedding_eyes")
    args = [
        "dataset=custom",
        f"dataset.video={video}",
        "subject=fin",
        "logger=none",
        "flame.n_shape=30",
        "flame.n_expr=20",
        "fit_flame.threads=1",
        "fit_flame.overlay_video=false",
        "landmarks.overlay=false",
        f"landmarks.chunk={LANDMARK_CHUNK}",
        "parsing.overlay=false",
        "iris.overlay=false",
        f"assets.root={root / 'assets'}",
        *[f"assets.{k}={tiny_flame_assets[k]}" for k in keys],
    ]
    cfg = compose(f"work_dir={root / 'work'}", "stage=fit_flame", *args)
    run_plan(cfg, SubjectDir(root / "work" / "custom" / "fin"))
    return Finished(root, video, dict(tiny_flame_assets), args)


def pytest_terminal_summary(terminalreporter) -> None:
    """The bad-input table: case, exit code, message, outputs intact (yes / NO / - for cases
    that do not touch a finished subject)."""
    from tests.bad_input.cases import ROWS

    if not ROWS:
        return
    w = max(len(r[0]) for r in ROWS)
    tr = terminalreporter
    tr.section("bad-input matrix")
    tr.write_line(f"{'case':<{w}}  exit  intact  message")
    for name, code, message, intact in ROWS:
        mark = "-" if intact is None else "yes" if intact else "NO"
        tr.write_line(f"{name:<{w}}  {code:>4}  {mark:<6}  {message[:110]}")
