"""What a user is told about doubtful input (issue 16 item 12): a truncated file's frame counts,
which of two faces is followed, a small face that the crop upscales, the file a full disk hit."""

from __future__ import annotations

import pytest

from tests.bad_input.conftest import CLIP
from tests.bad_input.media import small_face_folder, truncated_copy, two_faces_folder
from tests.cli_helpers import launch, one_error_line
from tests.conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "photos"


def _need(path):
    if not path.exists():
        pytest.skip(f"test media not present: {path}")
    return path


def test_truncated_video_says_how_many_frames_decoded(tmp_path):
    video = truncated_copy(_need(CLIP), tmp_path / "cut.mp4")
    args = ["dataset=custom", f"dataset.video={video}", f"work_dir={tmp_path}", "logger=none"]
    proc = launch(*args, "stage=extract_frames")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decoded 144 of the 500 frames its header announces" in proc.stdout
    assert "stopped at 5.80 s of 20.00 s" in proc.stdout
    assert len(list((tmp_path / "custom" / "cut" / "frames").iterdir())) == 144


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (two_faces_folder, "3 of 3 frames show 2 faces; following one subject, the larger face"),
        (small_face_folder, "the 512 px crop upscales it"),
    ],
)
def test_face_notes(tmp_path, make, says):
    folder = make(_need(PHOTOS), tmp_path / "photos")
    args = ["dataset=custom", f"dataset.images={folder}", f"work_dir={tmp_path}", "logger=none"]
    proc = launch(*args, "stage=detect")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert says in proc.stdout


def test_full_disk_names_the_file(tmp_path):
    video = _need(CLIP)
    work = tmp_path / "work"
    args = ["dataset=custom", f"dataset.video={video}", f"work_dir={work}", "logger=none"]
    proc = launch(*args, "stage=extract_frames", "frames.max_frames=5", full_disk=work)
    line = one_error_line(proc, alone=False)
    assert "no space left on the device writing" in line and str(work / "custom") in line
    assert "finished outputs are kept" in line
