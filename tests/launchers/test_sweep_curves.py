"""A 3-job Hydra sweep over fit_flame.w.smooth_pose, through launch.py, logs per-step curves of
every loss term to W&B offline runs that a sweep comparison can tell apart (issue 12's
done-when): read back from the run files with wandb's own reader.

The sweep is typed as DESIGN.md writes it, with the section's old name
(``tracker.w.smooth_pose=1,10,100``): the runs carry the new name (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prep.subject import SubjectDir
from prep.wandb_runs import read_offline_run
from tests.fixtures import flame_fixtures
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_sequence import make_sequence, write_subject

REPO = Path(__file__).resolve().parents[2]
tiny_flame_assets = flame_fixtures.tiny_flame_assets  # the session fixture, registered here
TERMS = [
    "lmk",
    "iris",
    "prior/shape",
    "prior/expr",
    "prior/jaw",
    "prior/neck",
    "prior/eyes",
    "smooth/pose",
    "smooth/expr",
    "smooth/transl",
    "smooth/eyes",
    "total",
]


@pytest.mark.slow
def test_sweep_runs_have_per_step_curves_of_every_term(tmp_path, tiny_flame_assets):
    work, wb, sweep = tmp_path / "work", tmp_path / "wb", tmp_path / "sweep"
    oracle = FlameOracle.from_assets(tiny_flame_assets, 30, 20)
    seq = make_sequence(oracle, 12, seed=3, size=256, focal=900.0, noise_px=1.0)
    write_subject(SubjectDir(work / "custom" / "sw"), seq)
    env = {**os.environ, "AVATAR_PREP_PROGRESS": "0", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "launch.py"),
            "-m",
            "dataset=custom",
            "subject=sw",
            "stage=fit_flame",
            "only=true",
            "tracker.w.smooth_pose=1,10,100",
            "logger=wandb",
            f"logger.dir={wb}",
            f"work_dir={work}",
            "flame.n_shape=30",
            "flame.n_expr=20",
            "fx=900",
            "fit_flame.threads=1",
            "fit_flame.overlay_video=false",
            f"assets.flame2020={tiny_flame_assets['flame2020']}",
            f"assets.flame_lmk_embedding_eyes={tiny_flame_assets['flame_lmk_embedding_eyes']}",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.num}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 ok" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert "info: tracker.w.smooth_pose is now fit_flame.w.smooth_pose" in proc.stdout
    runs = [read_offline_run(f) for f in sorted((wb / "wandb").glob("offline-run-*"))]
    assert len(runs) == 3
    by_weight = {r.config["fit_flame"]["w"]["smooth_pose"]: r for r in runs}
    assert sorted(by_weight) == [1.0, 10.0, 100.0]
    for w, run in by_weight.items():
        assert run.job_type == "fit_flame" and run.group == "custom"
        assert run.tags == ["sweep:" + "/".join(sweep.parts[-2:])]
        assert f"fit_flame.w.smooth_pose={w:g}" in run.name and run.name.startswith("sw/fit_flame")
        steps = run.series("trainer/global_step")
        assert steps == list(range(len(steps))) and len(steps) >= 12  # phase budgets 6+8+3
        for t in TERMS:  # every term at every step
            assert len(run.series(f"loss/{t}")) == len(steps), t
        assert len(run.series("metrics/lmk_rmse_px")) == len(steps)
    pose = {w: by_weight[w].series("loss/smooth/pose")[-1] / w for w in by_weight}
    assert pose[100.0] < pose[10.0] < pose[1.0]  # heavier smoothing, smoother pose
