"""Finished work and a file that turns out short: the matrix (test_matrix.py) shows a truncated
source refused over a finished subject; with force=true it replaces it, saying how much decoded."""

from __future__ import annotations

from tests.bad_input.conftest import CLIP
from tests.bad_input.media import truncated_copy
from tests.cli_helpers import launch


def test_truncated_video_with_force_replaces_and_says_so(finished, tmp_path):
    subject = finished.copy(tmp_path)
    video = truncated_copy(CLIP, tmp_path / "truncated.mp4")  # decodes 144 of its 500 frames
    args = [*finished.overrides(tmp_path / "work"), f"dataset.video={video}", "force=true"]
    proc = launch(*args, "stage=extract_frames")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decoded 144 of the 500 frames its header announces" in proc.stdout
    assert len(list((subject / "frames").iterdir())) == 144
    assert not (subject / ".stash").exists()
