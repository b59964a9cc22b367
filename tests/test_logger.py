"""Experiment loggers: CSV runs, W&B offline runs shared by a stage and its Lightning trainer,
run names that tell a sweep's runs apart, and online runs that never hang: a server that refuses,
one that accepts the connection but never answers, and an init that stalls after the server
answered all fall back to offline within logger.init_timeout_s, with one line."""

from __future__ import annotations

import csv
import threading
import time

import pytest
import yaml

from prep.logger import (
    CsvLogger,
    ExperimentLogger,
    WandbLogger,
    make_logger,
    run_name,
    sweep_tag,
)
from prep.subject import SubjectDir
from prep.wandb_runs import read_offline_run
from tests.bad_input import media


def test_none_backend_is_a_no_op(compose_cfg, tmp_path):
    cfg = compose_cfg("logger=none", "dataset=custom", "subject=s")
    lg = make_logger(cfg, SubjectDir(tmp_path / "s"), "detect")
    assert type(lg) is ExperimentLogger and lg.lightning() is None
    lg.log_metrics({"x": 1.0})
    lg.finish()


def test_csv_backend_writes_one_folder_per_run(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "logger=csv",
        f"logger.dir={tmp_path / 'logs'}",
        "dataset=custom",
        "subject=s",
        "fit_flame.w.smooth_pose=7",
    )
    lg = make_logger(cfg, SubjectDir(tmp_path / "s"), "fit_flame")
    assert isinstance(lg, CsvLogger)
    assert lg.folder.parent == tmp_path / "logs" / "custom" / "s" / "fit_flame"
    pl = lg.lightning()  # Lightning's CSV logger, same folder, with the run's config
    lg.log_metrics({"loss": 2.5}, step=3)
    lg.summary({"lmk_rmse_px": 1.25})
    rows = list(csv.DictReader(lg.path.read_text().splitlines()))
    assert [(r["step"], r["key"], r["value"]) for r in rows] == [
        ("3", "loss", "2.5"),
        ("", "summary/lmk_rmse_px", "1.25"),
    ]
    pl.log_metrics({"loss/lmk": 0.5}, step=0)
    pl.save()
    assert (lg.folder / "metrics.csv").read_text().splitlines()[1].startswith("0.5")
    hparams = yaml.safe_load((lg.folder / "hparams.yaml").read_text())
    assert hparams["fit_flame"]["w"]["smooth_pose"] == 7.0
    other = make_logger(cfg, SubjectDir(tmp_path / "s"), "fit_flame")
    assert other.folder != lg.folder  # a second run (a sweep's next job) gets its own folder


def test_run_names_tell_a_sweeps_runs_apart():
    overrides = [
        "dataset=insta",
        "subject=bala",
        "stage=fit_flame",
        "fit_flame.w.smooth_pose=10",
        "logger.mode=online",
        "+assets.flame2020=/m.pkl",
        "flame.n_shape=50",
        "fit_flame.threads=1",
    ]
    assert run_name("bala", "fit_flame", overrides) == (
        "bala/fit_flame fit_flame.w.smooth_pose=10 flame.n_shape=50"
    )
    assert run_name("bala", "fit_flame", []) == "bala/fit_flame"
    assert sweep_tag("outputs/multirun/2025-01-01/10-00-00") == "sweep:2025-01-01/10-00-00"
    assert len(sweep_tag("/" + "x" * 200 + "/y")) == 64  # W&B refuses longer tags


def _wandb_cfg(compose_cfg, tmp_path, mode):
    return compose_cfg(
        "logger=wandb",
        f"logger.mode={mode}",
        f"logger.dir={tmp_path / 'wb'}",
        "logger.init_timeout_s=2",
        "dataset=custom",
        "subject=s",
    )


def _wandb_run(cfg, tmp_path) -> float:
    """Seconds a stage's first log call and finish take (a test failure, not a hang, at 60 s)."""
    lg = make_logger(cfg, SubjectDir(tmp_path / "s"), "fit_flame")
    assert isinstance(lg, WandbLogger)
    start = time.time()

    def use():
        lg.log_metrics({"loss": 1.0})
        lg.summary({"lmk_rmse_px": 1.0})
        lg.finish()

    worker = threading.Thread(target=use, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "W&B init still blocked after 60 s"
    return time.time() - start


def test_stage_and_lightning_log_into_one_offline_run(compose_cfg, tmp_path):
    lg = make_logger(
        _wandb_cfg(compose_cfg, tmp_path, "offline"), SubjectDir(tmp_path / "s"), "fit_flame"
    )
    pl = lg.lightning()
    for step in range(3):
        pl.log_metrics({"loss/lmk": 1.0 / (step + 1), "metrics/lmk_rmse_px": 2.0}, step=step)
    lg.log_metrics({"fine/x": 5.0}, step=1)  # a stage's own index never fights W&B's step
    lg.summary({"lmk_rmse_px": 2.0})
    lg.finish()
    (folder,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    run = read_offline_run(folder)
    assert (run.name, run.group, run.job_type) == ("s/fit_flame", "custom", "fit_flame")
    assert run.series("loss/lmk") == [1.0, 0.5, 1.0 / 3]
    assert run.series("trainer/global_step") == [0, 1, 2]
    assert run.series("fine/x") == [5.0] and run.config["logger"]["mode"] == "offline"


def test_refused_connection_falls_back_offline(compose_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    elapsed = _wandb_run(_wandb_cfg(compose_cfg, tmp_path, "online"), tmp_path)
    assert elapsed < 30
    assert "did not answer" in caplog.text and "logging offline" in caplog.text
    assert list((tmp_path / "wb" / "wandb").glob("offline-run-*"))


@pytest.fixture
def silent_server():
    """A TCP server that accepts every connection and never sends a byte."""
    with media.silent_server() as url:
        yield url


def test_server_that_never_answers_falls_back_offline(
    compose_cfg, tmp_path, monkeypatch, caplog, silent_server
):
    """The issue's case: before, wandb.init hung past 300 s whatever init_timeout said."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", silent_server)
    elapsed = _wandb_run(_wandb_cfg(compose_cfg, tmp_path, "online"), tmp_path)
    assert elapsed < 30
    lines = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(lines) == 1 and "did not answer within 2 s" in lines[0]
    assert list((tmp_path / "wb" / "wandb").glob("offline-run-*"))


def test_stalled_online_init_is_abandoned(
    compose_cfg, tmp_path, monkeypatch, caplog, silent_server
):
    """Past the probe, wandb.init itself stalls: its service is stopped and the run goes offline."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", silent_server)
    monkeypatch.setattr("prep.wandb_runs.server_answers", lambda url, timeout_s: (True, ""))
    elapsed = _wandb_run(_wandb_cfg(compose_cfg, tmp_path, "online"), tmp_path)
    assert elapsed < 30
    assert "online init did not finish within 2 s" in caplog.text
    (folder,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    assert read_offline_run(folder).series("loss") == [1.0]
