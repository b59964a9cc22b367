"""Stage export through the engine: every format, skip when done, re-run when a file is lost,
assets checked before any work with one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from prep.errors import BadConfigError, MissingAssetError
from prep.io.files import write_json
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.export.synthetic_subject import INVALID, T, make_subject
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401

ALL = "export.formats=[imavatar,hravatar,insta,gaussianavatars,nerf]"


@pytest.fixture
def subject(tmp_path) -> SubjectDir:
    s = make_subject(tmp_path / "work" / "custom" / "s1")
    write_json(s.manifest_path("fit_flame"), {"stage": "fit_flame", "version": 1})
    write_json(s.manifest_path("fit_3dmm_fine"), {"stage": "fit_3dmm_fine", "version": 1})
    return s


def _cfg(compose_cfg, subject, *extra):
    return compose_cfg(
        "dataset=custom",
        "subject=s1",
        "stage=export",
        "only=true",
        "export.insta_meshes=false",
        f"export.nerf_audio={subject.root / 'aud.npy'}",
        *extra,
    )


def test_export_all_formats_then_skip_then_rerun_on_lost_file(compose_cfg, subject):
    cfg = _cfg(compose_cfg, subject, ALL)
    out = run_plan(cfg, subject)
    assert out.ran == ["export"]
    m = out.results["export"].metrics
    assert m["imavatar_frames"] == m["insta_frames"] == T - len(INVALID) and m["nerf_frames"] == T
    for fmt, probe in [
        ("imavatar", "flame_params.json"),
        ("hravatar", "tracked_params.json"),
        ("insta", "transforms_test.json"),
        ("gaussianavatars", "canonical_flame_param.npz"),
        ("nerf", "aud.npy"),
    ]:
        assert (subject.export_dir(fmt) / probe).exists()
        assert (subject.export_dir(fmt) / "prep_export.json").exists()
    assert run_plan(cfg, subject).skipped == ["export"]
    (subject.export_dir("insta") / "images" / "00002.png").unlink()
    again = run_plan(cfg, subject)
    assert (
        again.ran == ["export"] and (subject.export_dir("insta") / "images" / "00002.png").exists()
    )


def test_bfm_rerun_reexports_nerf(compose_cfg, subject):
    cfg = _cfg(compose_cfg, subject, "export.formats=[nerf]")
    run_plan(cfg, subject)
    write_json(subject.manifest_path("fit_3dmm_fine"), {"stage": "fit_3dmm_fine", "version": 2})
    assert run_plan(cfg, subject).ran == ["export"]


def test_no_format_is_a_config_error(compose_cfg, subject):
    """An unknown format never composes (tests/config/test_choices.py); an empty list does."""
    with pytest.raises(BadConfigError, match="export.formats is empty"):
        run_plan(_cfg(compose_cfg, subject, "export.formats=[]"), subject)


def test_missing_audio_features_is_one_line_before_any_work(compose_cfg, subject, tmp_path):
    cfg = compose_cfg(
        "dataset=custom",
        "subject=s1",
        "stage=export",
        "only=true",
        "export.formats=[imavatar,nerf]",
        f"assets.deepspeech_features={tmp_path / 'ds'}",
    )
    with pytest.raises(MissingAssetError, match="deepspeech_features.*assets.deepspeech_features"):
        run_plan(cfg, subject)
    (tmp_path / "ds").mkdir()
    with pytest.raises(MissingAssetError, match=r"s1\.npy.*extract_ds_features"):
        run_plan(cfg, subject)
    assert not subject.export_dir("imavatar").exists()  # nothing written before the check


def test_missing_insta_topology_names_the_asset(compose_cfg, subject, tmp_path):
    cfg = compose_cfg(
        "dataset=custom",
        "subject=s1",
        "stage=export",
        "only=true",
        "export.formats=[insta]",
        f"assets.root={tmp_path / 'no-assets'}",
    )
    with pytest.raises(MissingAssetError, match="insta_topology"):
        run_plan(cfg, subject)


def test_insta_meshes_through_the_engine(compose_cfg, subject, tiny_flame_assets, tmp_path):  # noqa: F811
    torch = pytest.importorskip("torch")
    from prep.export.common import read_obj, write_obj
    from prep.export.insta import read_insta
    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model
    from prep.models.flame_tracking import load_tracking

    data = load_flame_model(tiny_flame_assets["flame2020"])
    topo = tmp_path / "mesh_masks"  # INSTA-pytorch's folder: canonical.obj carries the faces
    write_obj(topo / "canonical.obj", data.v_template, data.faces[1:])
    cfg = _cfg(
        compose_cfg,
        subject,
        "export.formats=[insta]",
        "export.insta_meshes=true",
        f"assets.flame2020={tiny_flame_assets['flame2020']}",
        f"assets.insta_topology={topo}",
    )
    run_plan(cfg, subject)
    ex = read_insta(subject.export_dir("insta"))
    track = load_tracking(subject)
    model = FlameModel(data, 20, 10, dtype=torch.float64)
    valid = [i for i in range(T) if i not in INVALID]
    verts, faces = read_obj(subject.export_dir("insta") / ex.frames[3]["mesh_path"])
    t = torch.as_tensor(track.transl[valid] - track.transl[valid].mean(0), dtype=torch.float64)

    def f64(a):
        return torch.as_tensor(np.asarray(a, np.float64))

    i = valid[3]
    ref = model(
        f64(track.shape),
        f64(track.expr[i : i + 1]),
        f64(track.global_pose[i : i + 1]),
        f64(track.neck_pose[i : i + 1]),
        f64(track.jaw_pose[i : i + 1]),
        f64(track.eyes_pose[i : i + 1]),
        transl=t[3:4],
    )
    np.testing.assert_allclose(verts, ref.vertices[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(faces, data.faces[1:])
    assert (subject.export_dir("insta") / "canonical.obj").exists()
