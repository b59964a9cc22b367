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


def compose(*overrides: str):
    """Compose conf/config.yaml with `overrides` (Hydra syntax) into the typed `Config`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import prep.config
    from prep.config import to_typed

    prep.config.register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return to_typed(hydra_compose("config", overrides=list(overrides)))


@pytest.fixture
def compose_cfg(tmp_path: Path):
    """Build a typed Config from overrides, with work_dir in tmp and logging off."""

    def make(*overrides: str):
        return compose(f"work_dir={tmp_path / 'work'}", "logger=none", *overrides)

    return make
