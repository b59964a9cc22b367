"""Stage export through the engine: every format, skip when done, re-run when a file is lost."""

from __future__ import annotations

import pytest

from prep.errors import BadConfigError
from prep.io.files import write_json
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.export.synthetic_subject import INVALID, T, make_subject

ALL = "export.formats=[imavatar,insta,gaussianavatars,nerf]"


@pytest.fixture
def subject(tmp_path) -> SubjectDir:
    s = make_subject(tmp_path / "work" / "custom" / "s1")
    write_json(s.manifest_path("fit_flame"), {"stage": "fit_flame", "version": 1})
    write_json(s.manifest_path("fit_3dmm_fine"), {"stage": "fit_3dmm_fine", "version": 1})
    return s


def _cfg(compose_cfg, *extra):
    return compose_cfg("dataset=custom", "subject=s1", "stage=export", "only=true",
                       "export.insta_meshes=false", *extra)  # fmt: skip


def test_export_all_formats_then_skip_then_rerun_on_lost_file(compose_cfg, subject):
    cfg = _cfg(compose_cfg, ALL)
    out = run_plan(cfg, subject)
    assert out.ran == ["export"]
    m = out.results["export"].metrics
    assert m["imavatar_frames"] == m["insta_frames"] == T - len(INVALID) and m["nerf_frames"] == T
    for fmt, probe in [("imavatar", "flame_params.json"), ("insta", "transforms_test.json"),
                       ("gaussianavatars", "canonical_flame_param.npz"),
                       ("nerf", "transforms_val.json")]:  # fmt: skip
        assert (subject.export_dir(fmt) / probe).exists()
    assert run_plan(cfg, subject).skipped == ["export"]
    (subject.export_dir("insta") / "images" / "00002.png").unlink()
    again = run_plan(cfg, subject)
    assert (
        again.ran == ["export"] and (subject.export_dir("insta") / "images" / "00002.png").exists()
    )


def test_bfm_rerun_reexports_nerf(compose_cfg, subject):
    cfg = _cfg(compose_cfg, "export.formats=[nerf]")
    run_plan(cfg, subject)
    write_json(subject.manifest_path("fit_3dmm_fine"), {"stage": "fit_3dmm_fine", "version": 2})
    assert run_plan(cfg, subject).ran == ["export"]


def test_unknown_format_is_a_config_error(compose_cfg, subject):
    with pytest.raises(BadConfigError, match="export.formats"):
        run_plan(_cfg(compose_cfg, "export.formats=[colmap]"), subject)
