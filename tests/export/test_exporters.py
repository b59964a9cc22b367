"""Exporter mechanics on a small synthetic subject: numbering, splits, re-cropping for a moving
crop, resume, clear errors. (What the consumers' loaders read, and where they draw the head, is
checked on a real clip in tests/export/test_conformance_*.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from prep.config.export import ExportConfig
from prep.errors import BadConfigError, MissingInputError
from prep.export import cameras as cam
from prep.export.common import read_obj
from prep.export.flame_mesh import FlameVertices, Topology, insta_topology
from prep.export.gaussianavatars import export_gaussianavatars, read_gaussianavatars, vhap_split
from prep.export.imavatar import export_imavatar, read_imavatar
from prep.export.insta import INSTA_SEG_CODES, export_insta, insta_split, read_insta, seg_mask
from prep.export.nerf import export_nerf, read_nerf
from prep.io.files import load_npz, read_image, save_npz
from prep.models.flame_tracking import load_tracking
from tests.export.synthetic_subject import INVALID, T, make_subject


def _valid():
    return [i for i in range(T) if i not in INVALID]


@pytest.mark.parametrize("target,first", [("imavatar", "1"), ("hravatar", "00000")])
def test_imavatar_numbering_images_and_camera(export_subject, tmp_path, target, first):
    out = tmp_path / "ima"
    n = export_imavatar(export_subject, ExportConfig(), out, force=False, target=target)
    assert n == T - len(INVALID)
    ex = read_imavatar(out)
    assert ex.names[0] == first and len(ex.names) == n
    track = load_tracking(export_subject)
    np.testing.assert_allclose(ex.expression[:, :10], track.expr[_valid()], atol=1e-6)
    assert ex.expression.shape[1] == 50 and len(ex.params["shape_params"]) == 100
    # per-frame world_mat: the shared camera plus x4 the head's own translation
    np.testing.assert_allclose(
        ex.world_mats[:, :, 3] / 4, track.transl[_valid()] * [1, 1, 1], atol=1e-6
    )
    kp = json.loads((out / "keypoint.json").read_text())
    assert len(kp) == n and len(kp[f"{first}.png"]) == 68
    if target == "imavatar":
        np.testing.assert_allclose(ex.K, track.K, atol=1e-9)  # a static crop is kept
        for k, i in enumerate(_valid()):
            rgba = read_image(export_subject.image_path(i), "rgba")
            mask = read_image(export_subject.mask_path(i), "gray")
            np.testing.assert_array_equal(ex.mask(k), mask)
            img = ex.image(k)  # white behind the matte, the crop where it is opaque
            np.testing.assert_array_equal(img[mask == 255], rgba[..., :3][mask == 255])
            assert np.all(img[mask == 0] == 255)
    else:
        tp = json.loads((out / "tracked_params.json").read_text())
        fx, fy, cx, cy = tp["intrinsics"]
        assert (cx, cy) == (40 / 2, 48 / 2) and fx == fy  # re-cropped around the centre
        assert np.asarray(tp[f"{first}.png"]["world_mat"]).shape == (4, 4)
        assert read_image(out / "image" / f"{first}.png", "rgba").shape[2] == 4
        np.testing.assert_allclose(ex.K[0, 2], (40 - 1) / 2)


def test_imavatar_remove_cloth_clears_mask(export_subject, tmp_path):
    out = tmp_path / "ima"
    export_imavatar(export_subject, ExportConfig(remove_cloth=True), out, force=False)
    labels = read_image(out / "semantic" / "1.png", "gray")
    assert np.all(read_image(out / "mask" / "1.png", "gray")[labels == 16] == 0)


def test_imavatar_needs_tracking(export_subject, tmp_path):
    export_subject.flame_tracking.unlink()
    with pytest.raises(MissingInputError, match="fit_flame"):
        export_imavatar(export_subject, ExportConfig(), tmp_path / "o", force=False)


def test_unknown_imavatar_target(export_subject, tmp_path):
    with pytest.raises(BadConfigError):
        export_imavatar(export_subject, ExportConfig(), tmp_path / "o", False, target="x")


def test_rotating_camera_is_folded_with_the_root_joint(tmp_path):
    """An imported tracking whose camera rotates: the rotation goes into the FLAME global pose
    about the root joint, and the json projects like the canonical camera."""
    s = make_subject(tmp_path / "s", rotating=True)
    root = np.array([0.002, -0.03, -0.01])
    out = tmp_path / "ima"
    export_imavatar(s, ExportConfig(), out, False, lambda tr: np.tile(root, (tr.n_frames, 1)))
    ex = read_imavatar(out)
    track = load_tracking(s)
    valid = _valid()
    r_old = Rotation.from_rotvec(track.global_pose[valid]).as_matrix()
    r_new = Rotation.from_rotvec(ex.pose[:, :3]).as_matrix()
    v_loc = np.random.default_rng(0).normal(0, 0.05, (len(valid), 9, 3))
    world = np.einsum("tij,tnj->tni", r_old, v_loc - root) + root + track.transl[valid, None]
    ref = cam.project_opencv(world, track.w2c[valid], track.K)
    flame_gl = np.einsum("tij,tnj->tni", r_new, v_loc - root) + root  # IMAvatar: no translation
    x = 4 * flame_gl + ex.world_mats[:, None, :, 3]
    fx, fy, cx, cy = np.asarray(ex.params["intrinsics"]) * [40, 48, 40, 48]
    got = np.stack([fx * x[..., 0] / x[..., 2] + cx, fy * x[..., 1] / x[..., 2] + cy], -1)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_insta_split_and_files(export_subject, tmp_path):
    out = tmp_path / "insta"
    cfg = ExportConfig(insta_test_frames=6, insta_val_frames=2)
    n = export_insta(export_subject, cfg, out, force=False)
    ex = read_insta(out)
    track = load_tracking(export_subject)
    valid = _valid()
    # the world moved to the mean head position: the cameras moved with it
    w2c, _ = cam.relocate_world(track.w2c[valid], track.transl[valid])
    np.testing.assert_allclose(ex.w2c, w2c, atol=1e-9)
    np.testing.assert_allclose(ex.K, track.K, atol=1e-9)
    assert ex.exp.shape == (n, 100) and np.all(ex.exp[:, track.n_expr :] == 0)
    assert len(ex.splits["test"]) == 2 and len(ex.splits["train"]) == n - 2  # clamped to n/4
    seg = read_image(out / "seg_mask" / "00000.png", "rgb")
    labels = read_image(export_subject.parsing_path(0), "gray")
    np.testing.assert_array_equal(seg[..., 0], INSTA_SEG_CODES[labels])  # red = INSTA's code
    info = json.loads((out / "prep_export.json").read_text())
    assert any("cannot load" in note for note in info["notes"])  # no meshes without FLAME


def test_insta_split_matches_insta_for_long_clips():
    s = insta_split(1000, 350, 20)
    assert (
        len(s["train"]) == 650 and s["test"][0] == 650 and list(s["val"]) == list(range(980, 1000))
    )


def test_seg_codes_follow_insta_face_parsing_colours():
    # scripts/patches/face-parsing: 13 (lower lip) -> 120, 16 (cloth) -> 90, 17 (hair) -> 80
    codes = seg_mask(np.array([[0, 1, 13, 16, 17]], np.uint8))[0, :, 0]
    np.testing.assert_array_equal(codes, [0, 250, 120, 90, 80])


def test_insta_topology_transfer_matches_simplification(tmp_path, flame_public):
    from tests.fixtures.insta_topology import write_insta_topology

    _, faces = read_obj(flame_public / "head_template.obj")
    expected = write_insta_topology(tmp_path / "topo", faces, 5023)
    topo = insta_topology(tmp_path / "topo", 5023)
    np.testing.assert_array_equal(topo.faces, expected)
    np.testing.assert_array_equal(topo.vertex_order, np.arange(5023))


def test_insta_meshes_through_the_flame_layer(export_subject, tmp_path, tiny_flame_assets):
    torch = pytest.importorskip("torch")
    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model

    track = load_tracking(export_subject)
    model = FlameModel(
        load_flame_model(tiny_flame_assets["flame2020"]), 20, 10, dtype=torch.float64
    )
    flame = FlameVertices(model, track)
    topo = Topology(np.arange(len(model.v_template)), model.faces.numpy()[::2])
    out = tmp_path / "insta"
    export_insta(export_subject, ExportConfig(), out, False, flame, topo)
    valid = _valid()
    verts, faces = read_obj(out / "meshes" / "00003.obj")
    t = track.transl[valid] - track.transl[valid].mean(0)
    ref = flame.frames(np.array([valid[3]]), t[3:4])[0]
    np.testing.assert_allclose(verts, ref, atol=1e-5)
    np.testing.assert_array_equal(faces, topo.faces)
    canon, _ = read_obj(out / "canonical.obj")
    np.testing.assert_allclose(canon, flame.canonical(), atol=1e-5)
    import cv2

    depth = cv2.imread(str(out / "depth" / "00003.png"), -1)
    assert depth.dtype == np.uint16 and (depth > 0).sum() > 20
    w2c, _ = cam.relocate_world(track.w2c[valid], track.transl[valid])
    z_mm = (verts @ w2c[3, :3, :3].T + w2c[3, :3, 3])[:, 2] * 1000
    covered = depth[depth > 0]
    assert z_mm.min() - 1 <= covered.min() <= covered.max() <= z_mm.max() + 1


def test_gaussianavatars_files_and_split(export_subject, tmp_path):
    out = tmp_path / "ga"
    n = export_gaussianavatars(export_subject, ExportConfig(), out, force=False)
    ex = read_gaussianavatars(out)
    track = load_tracking(export_subject)
    valid = _valid()
    K = ex.K[0]
    assert K[0, 0] == K[1, 1] and K[0, 2] == (40 - 1) / 2 and K[1, 2] == (48 - 1) / 2
    p = ex.flame_param(2)
    np.testing.assert_allclose(p["expr"][0, : track.n_expr], track.expr[valid[2]])
    np.testing.assert_allclose(p["rotation"][0], track.global_pose[valid[2]])
    t = track.transl[valid] - track.transl[valid].mean(0)
    np.testing.assert_allclose(p["translation"][0], t[2], atol=1e-6)
    assert p["shape"].shape == (300,) and p["static_offset"].shape == (1, 5023, 3)
    assert read_image(out / "images" / "00000_00.png", "rgba").shape[2] == 4
    split = vhap_split(n, 0.7)
    assert len(read_gaussianavatars(out, "train").frames) == len(split["train"]) == np.ceil(0.7 * n)
    assert read_gaussianavatars(out, "val").frames == []
    canon = np.load(out / "canonical_flame_param.npz")
    assert np.all(canon["expr"] == 0) and canon["jaw_pose"][0, 0] == pytest.approx(0.3)


def test_moving_crop_is_recropped_to_one_camera(export_subject, tmp_path):
    """A smooth crop gives per-frame K: single-camera formats re-crop every frame to one."""
    z = load_npz(export_subject.flame_tracking)
    K = np.repeat(z["K"][None], T, axis=0)
    K[:, 0, 2] += np.arange(T) * 0.5  # the principal point drifts with the crop
    save_npz(export_subject.flame_tracking, **{**z, "K": K})
    export_insta(export_subject, ExportConfig(), tmp_path / "insta", force=False)
    ex = read_insta(tmp_path / "insta")
    np.testing.assert_allclose(ex.K[0, 2], (40 - 1) / 2)
    info = json.loads((tmp_path / "insta" / "prep_export.json").read_text())
    assert info["recropped"] is True


def test_nerf_files(export_subject, tmp_path):
    out = tmp_path / "nerf"
    n = export_nerf(export_subject, ExportConfig(), out, False, export_subject.root / "aud.npy")
    ex = read_nerf(out)
    z = np.load(export_subject.bfm_fine)
    assert n == T and ex.split.count("val") == 1
    np.testing.assert_allclose(
        cam.euler_to_matrix(ex.euler), cam.euler_to_matrix(z["euler"]), atol=1e-9
    )
    np.testing.assert_allclose(ex.trans, z["trans"], atol=1e-9)
    assert ex.focal == 1100.0 and (ex.cx, ex.cy) == ((40 - 1) / 2, (48 - 1) / 2)  # the fit's
    for sub in ("ori_imgs", "head_imgs", "com_imgs"):
        assert all((out / sub / f"{i}.jpg").exists() for i in ex.img_ids)
    assert np.load(out / "aud.npy").shape == (T, 16, 29) and (out / "bc.jpg").exists()
    frames = json.loads((out / "transforms_train.json").read_text())["frames"]
    assert all(len(f["face_rect"]) == 4 for f in frames)


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
