"""Fixtures of the detect/crop/matting tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.vision.perception_data import clip_frames


@pytest.fixture(scope="session")
def c03_frames(clip_c03: Path) -> list[np.ndarray]:
    """First 40 frames of the frontal anchor clip (512x512 RGB)."""
    return clip_frames(clip_c03, 40)
