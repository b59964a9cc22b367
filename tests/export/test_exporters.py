"""Exporters against their readers: files, numbering, splits and cameras survive the round trip."""

from __future__ import annotations

import numpy as np
import pytest

from prep.config.export import ExportConfig
from prep.errors import BadConfigError, MissingInputError
from prep.export import cameras as cam
from prep.export.common import load_tracking, read_obj
from prep.export.gaussianavatars import export_gaussianavatars, read_gaussianavatars
from prep.export.imavatar import export_imavatar, read_imavatar
from prep.export.insta import export_insta, insta_split, read_insta
from prep.export.nerf import export_nerf, read_nerf
from prep.io.files import read_image
from tests.export.synthetic_subject import INVALID, T


def _valid():
    return [i for i in range(T) if i not in INVALID]


@pytest.mark.parametrize("target,first", [("imavatar", "1"), ("hravatar", "00000")])
def test_imavatar_round_trip(export_subject, tmp_path, target, first):
    out = tmp_path / "ima"
    cfg = ExportConfig(imavatar_target=target)
    n = export_imavatar(export_subject, cfg, out, force=False)
    assert n == T - len(INVALID)
    ex = read_imavatar(out)
    assert ex.names[0] == first and len(ex.names) == n
    track = load_tracking(export_subject)
    np.testing.assert_allclose(ex.K, track.K, atol=1e-9)
    np.testing.assert_allclose(ex.expression, track.expr[_valid()], atol=1e-6)
    for k, i in enumerate(_valid()):
        rgba = read_image(export_subject.image_path(i), "rgba")
        mask = read_image(export_subject.mask_path(i), "gray")
        np.testing.assert_array_equal(ex.mask(k), mask)
        # white background where the matte is 0, the crop where it is 255
        img = ex.image(k)
        np.testing.assert_array_equal(img[mask == 255], rgba[..., :3][mask == 255])
        assert np.all(img[mask == 0] == 255)
        assert (out / "semantic" / f"{ex.names[k]}.png").exists()
    assert ex.params["frames"][0]["file_path"] == f"./image/{first}"


def test_imavatar_remove_cloth_clears_mask(export_subject, tmp_path):
    out = tmp_path / "ima"
    export_imavatar(export_subject, ExportConfig(remove_cloth=True), out, force=False)
    labels = read_image(out / "semantic" / "1.png", "gray")
    assert np.all(read_image(out / "mask" / "1.png", "gray")[labels == 16] == 0)


def test_imavatar_needs_flame_params(export_subject, tmp_path):
    export_subject.flame_params_json.unlink()
    with pytest.raises(MissingInputError, match="fit_flame"):
        export_imavatar(export_subject, ExportConfig(), tmp_path / "o", force=False)


def test_unknown_imavatar_target(export_subject, tmp_path):
    with pytest.raises(BadConfigError):
        export_imavatar(export_subject, ExportConfig(imavatar_target="x"), tmp_path / "o", False)


def test_insta_round_trip_with_meshes(export_subject, tmp_path):
    out = tmp_path / "insta"
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    track = load_tracking(export_subject)

    def vertices_fn(idx):  # a 4-vertex "head" moved by transl, enough to check the wiring
        base = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], np.float64)
        return base[None] + track.transl[idx][:, None], faces

    cfg = ExportConfig(insta_test_frames=6, insta_val_frames=2)
    n = export_insta(export_subject, cfg, out, force=False, vertices_fn=vertices_fn)
    ex = read_insta(out)
    valid = _valid()
    np.testing.assert_allclose(ex.w2c, track.w2c[valid], atol=1e-9)
    np.testing.assert_allclose(ex.K, track.K, atol=1e-9)
    np.testing.assert_allclose(ex.exp[:, : track.n_expr], track.expr[valid], atol=1e-6)
    assert ex.exp.shape == (n, 100) and np.all(ex.exp[:, track.n_expr :] == 0)
    np.testing.assert_array_equal(ex.image(0), read_image(export_subject.image_path(0), "rgba"))
    assert len(ex.splits["test"]) == 2 and len(ex.splits["train"]) == n - 2  # clamped to n/4
    assert ex.splits["test"][-1] == ex.splits["val"][-1] == ex.frames[-1]["file_path"]
    v, f = read_obj(out / ex.frames[1]["mesh_path"])
    np.testing.assert_allclose(v[0], track.transl[valid[1]], atol=1e-6)
    np.testing.assert_array_equal(f, faces)
    import json

    tf = json.loads((out / "transforms.json").read_text())
    for key in ("w", "h", "cx", "cy", "fl_x", "fl_y", "camera_angle_x", "camera_angle_y",
                "x_fov", "y_fov", "integer_depth_scale"):  # fmt: skip
        assert key in tf


def test_insta_split_matches_insta_for_long_clips():
    s = insta_split(1000, 350, 20)
    assert (
        len(s["train"]) == 650 and s["test"][0] == 650 and list(s["val"]) == list(range(980, 1000))
    )


def test_gaussianavatars_round_trip(export_subject, tmp_path):
    out = tmp_path / "ga"
    n = export_gaussianavatars(export_subject, ExportConfig(), out, force=False)
    ex = read_gaussianavatars(out)
    track = load_tracking(export_subject)
    valid = _valid()
    np.testing.assert_allclose(ex.w2c, track.w2c[valid], atol=1e-9)
    np.testing.assert_allclose(ex.K, track.K_frames[valid], atol=1e-9)
    p = ex.flame_param(2)
    np.testing.assert_allclose(p["expr"][0, : track.n_expr], track.expr[valid[2]])
    np.testing.assert_allclose(p["rotation"][0], track.global_pose[valid[2]])
    np.testing.assert_allclose(p["translation"][0], track.transl[valid[2]])
    assert p["shape"].shape == (300,) and p["static_offset"].shape == (1, 5023, 3)
    assert p["eyes_pose"].shape == (1, 6) and p["jaw_pose"].shape == (1, 3)
    np.testing.assert_array_equal(ex.mask(0), read_image(export_subject.mask_path(0), "gray"))
    train, val = read_gaussianavatars(out, "train"), read_gaussianavatars(out, "val")
    assert len(train.frames) == round(0.7 * n) and len(train.frames) + len(val.frames) == n
    # the exported OpenGL camera projects the canonical way (GaussianAvatars flips y, z back)
    pts = np.random.default_rng(0).normal(0, 0.05, (n, 5, 3))
    ga_px = np.concatenate([cam.project_nerf_camera(pts[t : t + 1], c)
                            for t, c in enumerate(ex.cameras)])  # fmt: skip
    np.testing.assert_allclose(ga_px, cam.project_opencv(pts, track.w2c[valid], track.K),
                               atol=1e-8)  # fmt: skip
    canon = np.load(out / "canonical_flame_param.npz")
    assert np.all(canon["expr"] == 0) and np.allclose(canon["shape"][:20], track.shape)


def test_nerf_round_trip(export_subject, tmp_path):
    out = tmp_path / "nerf"
    n = export_nerf(export_subject, ExportConfig(), out, force=False)
    ex = read_nerf(out)
    z = np.load(export_subject.bfm_fine)
    assert n == T and ex.split.count("val") == 1
    np.testing.assert_allclose(cam.euler_to_matrix(ex.euler), cam.euler_to_matrix(z["euler"]),
                               atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(ex.trans, z["trans"], atol=1e-9)
    assert ex.focal == 1100.0 and (ex.cx, ex.cy) == (20.0, 24.0)
    assert all((out / "ori_imgs" / f"{i}.jpg").exists() for i in ex.img_ids)


def test_nerf_needs_bfm(export_subject, tmp_path):
    export_subject.bfm_fine.unlink()
    with pytest.raises(MissingInputError, match="fit_3dmm_fine"):
        export_nerf(export_subject, ExportConfig(), tmp_path / "n", force=False)


def test_export_resumes_without_rewriting(export_subject, tmp_path):
    out = tmp_path / "ga"
    export_gaussianavatars(export_subject, ExportConfig(), out, force=False)
    img = out / "images" / "00000_00.png"
    mtime = img.stat().st_mtime_ns
    (out / "images" / "00001_00.png").unlink()
    export_gaussianavatars(export_subject, ExportConfig(), out, force=False)
    assert img.stat().st_mtime_ns == mtime and (out / "images" / "00001_00.png").exists()


def test_moving_crop_per_frame_intrinsics(export_subject, tmp_path):
    """A smooth crop gives per-frame K: GaussianAvatars keeps them, INSTA refuses clearly."""
    from prep.errors import BadInputError
    from prep.io.files import load_npz, save_npz

    z = load_npz(export_subject.flame_tracking)
    K = np.repeat(z["K"][None], T, axis=0)
    K[:, 0, 2] += np.arange(T)  # the principal point drifts with the crop
    save_npz(export_subject.flame_tracking, **{**z, "K": K})
    export_gaussianavatars(export_subject, ExportConfig(), tmp_path / "ga", force=False)
    np.testing.assert_allclose(read_gaussianavatars(tmp_path / "ga").K, K[_valid()], atol=1e-9)
    with pytest.raises(BadInputError, match="crop.mode=static"):
        export_insta(export_subject, ExportConfig(), tmp_path / "insta", force=False)
