"""Stage export through the engine: every format, skip when done, re-run when a file is lost."""

from __future__ import annotations

import numpy as np
import pytest

from prep.errors import BadConfigError
from prep.io.files import write_json
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.export.synthetic_subject import INVALID, T, make_subject
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401

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


def test_insta_meshes_through_the_flame_layer(compose_cfg, subject, tiny_flame_assets):  # noqa: F811
    torch = pytest.importorskip("torch")
    from prep.export.common import load_tracking, read_obj
    from prep.export.insta import read_insta
    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model

    cfg = _cfg(compose_cfg, "export.formats=[insta]", "export.insta_meshes=true",
               f"assets.flame2020={tiny_flame_assets['flame2020']}")  # fmt: skip
    run_plan(cfg, subject)
    ex = read_insta(subject.export_dir("insta"))
    track = load_tracking(subject)
    model = FlameModel(load_flame_model(tiny_flame_assets["flame2020"]), 20, 10,
                       dtype=torch.float64)  # fmt: skip
    i = 4  # export index 3 is frame 4 (frame 3 is invalid and skipped)
    verts, faces = read_obj(subject.export_dir("insta") / ex.frames[3]["mesh_path"])

    def t(a):
        return torch.as_tensor(np.asarray(a, np.float64))

    ref = model(t(track.shape), t(track.expr[i : i + 1]), t(track.global_pose[i : i + 1]),
                t(track.neck_pose[i : i + 1]), t(track.jaw_pose[i : i + 1]),
                t(track.eyes_pose[i : i + 1]), transl=t(track.transl[i : i + 1]))  # fmt: skip
    np.testing.assert_allclose(verts, ref.vertices[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(faces, model.faces.numpy())
    # depth/ is uint16 mm of the same mesh seen by the tracked camera
    import cv2

    depth = cv2.imread(str(subject.export_dir("insta") / ex.frames[3]["depth_path"]), -1)
    assert depth.dtype == np.uint16 and depth.shape == tuple(track.image_size)
    z_mm = (verts @ track.w2c[i, :3, :3].T + track.w2c[i, :3, 3])[:, 2] * 1000
    covered = depth[depth > 0]
    assert covered.size > 20 and z_mm.min() - 1 <= covered.min() <= covered.max() <= z_mm.max() + 1


def test_missing_flame_model_for_meshes_names_the_asset(compose_cfg, subject, tmp_path):
    from prep.errors import MissingAssetError

    cfg = _cfg(compose_cfg, "export.formats=[insta]", "export.insta_meshes=true",
               f"assets.root={tmp_path / 'no-assets'}")  # fmt: skip
    with pytest.raises(MissingAssetError, match="flame2020"):
        run_plan(cfg, subject)


def test_hravatar_params_built_from_tracking_project_like_the_canonical_camera(
    compose_cfg,
    subject,
    tiny_flame_assets,  # noqa: F811
):
    """Without fit_flame's json, flame_params.json comes from tracking.npz: FLAME posed with the
    exported pose + translation, x4, through world_mat and the negated-fx intrinsics, lands on
    the same pixels as the canonical mesh through w2c and K."""
    torch = pytest.importorskip("torch")
    from prep.export import cameras as cam
    from prep.export.common import load_tracking
    from prep.export.imavatar import read_imavatar
    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model

    subject.flame_params_json.unlink()
    cfg = _cfg(compose_cfg, "export.formats=[imavatar]", "export.imavatar_target=hravatar",
               f"assets.flame2020={tiny_flame_assets['flame2020']}")  # fmt: skip
    run_plan(cfg, subject)
    ex = read_imavatar(subject.export_dir("imavatar"))
    track = load_tracking(subject)
    valid = [i for i in range(T) if i not in INVALID]
    model = FlameModel(load_flame_model(tiny_flame_assets["flame2020"]), 20, 10,
                       dtype=torch.float64)  # fmt: skip

    def verts(pose15, transl):
        def t(a):
            return torch.as_tensor(np.asarray(a, np.float64))

        p = t(pose15)
        return model(t(track.shape), t(track.expr[valid]), p[:, :3], p[:, 3:6], p[:, 6:9],
                     p[:, 9:15], transl=t(transl)).vertices.numpy()  # fmt: skip

    ref = cam.project_opencv(verts(track.pose15()[valid], track.transl[valid]),
                             track.w2c[valid], track.K)  # fmt: skip
    transl = np.array([f["translation"] for f in ex.params["frames"]])
    ima = cam.ImavatarCamera(ex.world_mats[0], np.asarray(ex.params["intrinsics"]), None, None)
    got = cam.project_imavatar(verts(ex.pose, transl), ima, tuple(track.image_size))
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert ex.names[0] == "00000" and len(ex.params["frames"][0]["flame_keypoints"]) == 70
