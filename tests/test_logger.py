"""Experiment loggers: CSV rows, W&B offline runs, and falling back offline when unreachable."""

from __future__ import annotations

import csv
import time

from prep.logger import CsvLogger, ExperimentLogger, WandbLogger, make_logger
from prep.subject import SubjectDir


def test_none_backend_is_a_no_op(compose_cfg, tmp_path):
    cfg = compose_cfg("logger=none", "dataset=custom", "subject=s")
    lg = make_logger(cfg, SubjectDir(tmp_path / "s"), "detect")
    assert type(lg) is ExperimentLogger
    lg.log_metrics({"x": 1.0})
    lg.finish()


def test_csv_backend_appends_metrics(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "logger=csv", f"logger.dir={tmp_path / 'logs'}", "dataset=custom", "subject=s"
    )
    lg = make_logger(cfg, SubjectDir(tmp_path / "s"), "fit_flame")
    assert isinstance(lg, CsvLogger)
    lg.log_metrics({"loss": 2.5}, step=3)
    lg.summary({"lmk_rmse_px": 1.25})
    rows = list(csv.DictReader(lg.path.read_text().splitlines()))
    assert [(r["step"], r["key"], r["value"]) for r in rows] == [
        ("3", "loss", "2.5"),
        ("", "summary/lmk_rmse_px", "1.25"),
    ]


def _wandb_run(compose_cfg, tmp_path, mode):
    cfg = compose_cfg(
        "logger=wandb",
        f"logger.mode={mode}",
        f"logger.dir={tmp_path / 'wb'}",
        "logger.init_timeout_s=3",
        "dataset=custom",
        "subject=s",
    )
    lg = make_logger(cfg, SubjectDir(tmp_path / "s"), "fit_flame")
    assert isinstance(lg, WandbLogger)
    start = time.time()
    lg.log_metrics({"loss": 1.0})
    lg.summary({"lmk_rmse_px": 1.0})
    lg.finish()
    return time.time() - start


def test_wandb_offline_run_is_written(compose_cfg, tmp_path):
    _wandb_run(compose_cfg, tmp_path, "offline")
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1


def test_wandb_unreachable_server_falls_back_offline(compose_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    elapsed = _wandb_run(compose_cfg, tmp_path, "online")
    assert elapsed < 60
    assert "unreachable" in caplog.text
    assert list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
