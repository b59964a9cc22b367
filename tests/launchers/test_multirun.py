"""Many subjects through Hydra launchers, end to end through launch.py.

Covers: joblib (loky) workers running MediaPipe detection, submitit_local, a failing subject that
does not stop the others and shows up in the sweep summary, and the per-subject lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prep.subject import SubjectDir

REPO = Path(__file__).resolve().parents[2]


def launch(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "AVATAR_PREP_PROGRESS": "0", "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _summary(sweep: Path) -> dict[str, dict]:
    rows = json.loads((sweep / "summary.json").read_text())
    return {" ".join(r["overrides"]): r for r in rows}


@pytest.mark.slow
def test_joblib_runs_subjects_in_worker_processes(tmp_path, clip_c01):
    sweep, work = tmp_path / "sweep", tmp_path / "work"
    videos = [tmp_path / f"{s}.mp4" for s in ("s1", "s2", "s3")]
    for v in videos[:2]:
        v.symlink_to(clip_c01)  # s3.mp4 does not exist: that subject fails
    # (subdir=job number: the default override_dirname would nest folders at the '/' of paths)
    proc = launch(
        "-m",
        "dataset=custom",
        "dataset.video=" + ",".join(map(str, videos)),
        "stage=landmarks",
        "extract_frames.max_frames=8",
        "logger=none",
        f"work_dir={work}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # every job ran; one failed
    summary = _summary(sweep)
    failed = [r for r in summary.values() if not r["ok"]]
    assert len(summary) == 3 and len(failed) == 1 and "s3.mp4" in failed[0]["error"]
    out = proc.stdout + proc.stderr
    assert "1 failed" in out and "failed" in out.split("1 failed")[1]  # the end-of-sweep summary
    for s in ("s1", "s2"):  # MediaPipe (and its spawn pool) ran inside the loky workers
        assert SubjectDir(work / "custom" / s).landmarks_npz.exists(), s


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path, clip_c01):
    sweep, work = tmp_path / "sweep", tmp_path / "work"
    proc = launch(
        "-m",
        "dataset=custom",
        f"dataset.video={clip_c01}",
        "subject=a,b",
        "stage=extract_frames",
        "extract_frames.max_frames=5",
        "logger=none",
        f"work_dir={work}",
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["ok"] for r in _summary(sweep).values())
    for s in ("a", "b"):
        assert len(SubjectDir(work / "custom" / s).frame_names()) == 5
    assert list(sweep.glob(".submitit/*/*_log.out"))  # the jobs really went through submitit


def test_second_job_on_a_locked_subject(tmp_path, clip_c01):
    work = tmp_path / "work"
    subject = SubjectDir(work / "custom" / "busy")
    args = (
        "dataset=custom",
        f"dataset.video={clip_c01}",
        "subject=busy",
        "stage=extract_frames",
        "extract_frames.max_frames=3",
        "logger=none",
        f"work_dir={work}",
    )
    with subject.lock():
        proc = launch(*args)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "another job" in lines[-1]
    assert not subject.frames_dir.exists()

    hold = threading.Event()

    def holder():
        with subject.lock():
            hold.set()
            time.sleep(3)

    t = threading.Thread(target=holder)
    t.start()
    hold.wait()
    t0 = time.time()
    proc = launch(*args, "lock_wait=true")
    t.join()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.time() - t0 >= 2.0 and len(subject.frame_names()) == 3
