"""Fixtures of the exporter tests."""

from __future__ import annotations

import pytest

from prep.subject import SubjectDir
from tests.export.synthetic_subject import make_subject


@pytest.fixture
def export_subject(tmp_path) -> SubjectDir:
    """A subject of T=12 frames (frames 3 and 7 invalid) with tracking, images and BFM fit."""
    return make_subject(tmp_path / "subj")
