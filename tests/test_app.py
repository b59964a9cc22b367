"""The entry point: config parsing as users type it, and one-line errors for bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from prep.cli import check_group_choices
from tests.cli_helpers import REPO, launch, one_error_line


def test_mission_command_parses_as_written(tmp_path):
    proc = launch("dataset=hdtf", "stage=fit_flame", "fx=1539.67", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "fx: 1539.67" in proc.stdout and "name: fit_flame" in proc.stdout


def test_sweep_command_parses(tmp_path):
    # The mission's sweep, with stage=assets so each of the 6 jobs is instant.
    proc = launch(
        "-m",
        "dataset=insta",
        "subject=bala,justin",
        "stage=assets",
        "fit_flame.w.smooth_pose=1,10,100",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("*/status.json"))) == 6


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["dataset=nope"], "unknown dataset 'nope'"),
        (["stage=nope"], "unknown stage 'nope'"),
        (["matting=nope"], "unknown matting 'nope'"),
        (["extract_frames.fps=-5", "stage=assets"], "extract_frames.fps=-5.0 must be positive"),
        (["fx=0", "stage=assets"], "fx=0.0 must be a positive focal length"),
        (["dataset=hdtf", "stage=extract_frames"], "dataset=hdtf needs subject=<name>"),
        (["dataset=custom", "stage=extract_frames"], "dataset=custom needs dataset.video"),
        (["dataset=custom", "subject=../x", "stage=extract_frames"], "path separators"),
    ],
)
def test_bad_values_give_one_line(args, expect, tmp_path):
    line = one_error_line(launch(*args, f"work_dir={tmp_path}", "logger=none"))
    assert expect in line


def test_group_choices_check_sweeps():
    conf = REPO / "conf"
    assert check_group_choices(["dataset=custom,insta"], conf) is None
    assert "unknown dataset 'x'" in check_group_choices(["dataset=custom,x"], conf)
    assert check_group_choices(["dataset.video=a.mp4", "fx=3"], conf) is None


def _make_read_only(folder: Path) -> bool:
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def _undo_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def test_read_only_subject_folder_is_one_line_and_keeps_outputs(tmp_path):
    subject = tmp_path / "work" / "custom" / "clip"
    (subject / "frames").mkdir(parents=True)
    earlier = subject / "frames" / "000000.jpg"
    earlier.write_bytes(b"earlier output")
    if not _make_read_only(subject):
        pytest.skip("cannot make a folder read-only here")
    try:
        proc = launch(
            "dataset=custom",
            f"dataset.video={tmp_path / 'clip.mp4'}",
            "stage=extract_frames",
            f"work_dir={tmp_path / 'work'}",
            "logger=none",
        )
        line = one_error_line(proc)
    finally:
        _undo_read_only(subject)
    assert "cannot write" in line and str(subject) in line
    assert earlier.read_bytes() == b"earlier output"


def test_assets_table_lists_every_asset(tmp_path):
    proc = launch("stage=assets", f"assets.root={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    for name in ("flame2020", "bfm_front", "rvm_mobilenetv3", "bisenet", "deca"):
        assert name in proc.stdout
    assert "missing" in proc.stdout
