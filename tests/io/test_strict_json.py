"""The JSON the project writes is strict JSON: a number that is not finite is written as null.

Python's json module writes NaN and infinities as the bare tokens `NaN` / `Infinity`, which
JSON has no place for (RFC 8259 section 6: "Numeric values that cannot be represented in the
grammar below (such as Infinity and NaN) are not permitted"), so browsers' JSON.parse and jq
refuse the whole file. A single photo's landmark lag, a collection's crop jitter and the report's
median jitter are NaN by design, so manifests, report summaries and the sweep summary carried
them. The oracle here is json.loads with a `parse_constant` that raises: the json module calls
it for exactly those three non-JSON tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from prep.io.files import read_json, write_json
from prep.pipeline import StageResult, read_manifest, register_stage
from prep.runner import run_plan
from prep.subject import SubjectDir


def strict_load(path: Path):
    def refuse(token: str):
        raise ValueError(f"{path.name}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@register_stage("toy_undefined_metric", config=("extract_frames",))
def _toy_undefined_metric(ctx):
    """A stage whose input cannot define one of its metrics (one photo: no landmark lag)."""
    return StageResult(n_frames=1, metrics={"lag": float("nan"), "valid": 1.0}, headline="lag")


def test_write_json_writes_null_for_numbers_that_are_not_finite(tmp_path):
    obj = {
        "nan": float("nan"),
        "f32": np.float32("nan"),
        "inf": -math.inf,
        "rows": np.array([[1.5, np.nan], [np.inf, 2.0]]),
        "nested": [{"x": (np.float64("nan"), 3)}],
        "fine": [1, 2.25, "NaN", None, True],
        "path": tmp_path,
    }
    write_json(tmp_path / "a.json", obj)
    assert strict_load(tmp_path / "a.json") == {
        "nan": None,
        "f32": None,
        "inf": None,
        "rows": [[1.5, None], [None, 2.0]],
        "nested": [{"x": [None, 3]}],
        "fine": [1, 2.25, "NaN", None, True],
        "path": str(tmp_path),
    }


def test_a_manifests_undefined_metric_is_null_and_read_back_as_nan(compose_cfg, tmp_path):
    cfg = compose_cfg("dataset=custom", "subject=s1", "stage.name=toy_undefined_metric")
    subject = SubjectDir(tmp_path / "work" / "custom" / "s1")
    assert math.isnan(run_plan(cfg, subject).headline())
    raw = strict_load(subject.manifest_path("toy_undefined_metric"))
    assert raw["metrics"] == {"lag": None, "valid": 1.0}
    metrics = read_manifest(subject, "toy_undefined_metric")["metrics"]
    assert math.isnan(metrics["lag"]) and metrics["valid"] == 1.0
    out = run_plan(cfg, subject)  # skipped: the recorded result still gives a float headline
    assert out.ran == [] and math.isnan(out.headline())


def test_report_summaries_and_the_index_with_an_undefined_number(tmp_path):
    from prep.report.index import subject_rows
    from prep.report.page import index_page

    summary = tmp_path / "s1" / "report" / "summary.json"
    headline = {"lmk_midpoint_dev_px_median": np.nan, "n_frames": 1.0}
    write_json(summary, {"name": "s1", "headline": headline})
    assert strict_load(summary)["headline"]["lmk_midpoint_dev_px_median"] is None
    (row,) = subject_rows(tmp_path)
    assert math.isnan(row["headline"]["lmk_midpoint_dev_px_median"])
    assert "n/a" in index_page("custom", [row])


def test_index_reads_a_summary_written_before_the_metric_rename(tmp_path):
    """A subject reported before jitter_px_median was renamed shares the new column."""
    from prep.report.index import subject_rows

    for name, key in (("old", "jitter_px_median"), ("new", "lmk_midpoint_dev_px_median")):
        write_json(
            tmp_path / name / "report" / "summary.json", {"name": name, "headline": {key: 1.5}}
        )
    rows = subject_rows(tmp_path)
    assert [r["headline"] for r in rows] == [{"lmk_midpoint_dev_px_median": 1.5}] * 2


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_sweep_summary_is_strict(tmp_path, value):
    from prep.hydra_callbacks import SweepSummary

    write_json(tmp_path / "0" / "status.json", {"ok": True, "value": value, "error": ""})
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert strict_load(tmp_path / "summary.json")[0]["value"] is None
    assert read_json(tmp_path / "summary.json")[0]["job"] == "0"
