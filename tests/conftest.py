"""Shared fixtures: paths to the real test media in ../shared/data, and a scratch subject."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prep.subject import SubjectDir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVATAR_PREP_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("AVATAR_PREP_PROGRESS", "0")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test media not present: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real clips, photos, public FLAME-topology files); skips when absent."""
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def clip_c01() -> Path:
    """512x512, 25 fps, 400 frames: a man talking, turning his head ~60 degrees."""
    return _need(SHARED_DATA / "clips" / "c01_wojtek_headturn_512.mp4")


@pytest.fixture(scope="session")
def clip_c03() -> Path:
    """512x512, 25 fps, 500 frames with audio: a frontal news anchor."""
    return _need(SHARED_DATA / "clips" / "c03_german_anchor_512_20s.mp4")


@pytest.fixture(scope="session")
def flame_public() -> Path:
    """Public FLAME-topology files (template mesh, landmark embeddings)."""
    return _need(SHARED_DATA / "flame_public")


@pytest.fixture
def tmp_subject(tmp_path: Path) -> SubjectDir:
    """An empty subject directory in a temp folder."""
    return SubjectDir(tmp_path / "subject")
