"""Importers round-trip: a foreign folder -> import -> export draws the head where the folder did,
each read and projected the way its consumer does (within 0.5 px); fit_flame re-fits on
imported landmarks without any perception stage.

The foreign folders are our conformance-checked exports of the real clip (an IMAvatar folder,
an HRAvatar folder reduced to what HRAvatar's optimize.py writes, a VHAP/GaussianAvatars folder,
an INSTA folder) and metrical-tracker checkpoints written here as its tracker.py save_checkpoint
writes them (a dict of numpy arrays through torch.save; 6D rotations are pytorch3d's first two
rows; ``opencv`` R, t, K from pytorch3d's opencv_from_cameras_projection, pixel centres at
x + 0.5). Consumer steps: see the test_conformance_* modules.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from prep.io.files import load_npz
from prep.runner import run_plan
from prep.subject import subject_dir
from tests.conftest import compose
from tests.export import consumer_flame as cf
from tests.export.conformance import TOL_PX, apply, crop_to_export, fit_of, splat_project
from tests.export.test_conformance_gaussianavatars import read_cameras
from tests.export.test_conformance_imavatar import imavatar_load, imavatar_project

pytestmark = pytest.mark.slow


def _import(real, kind, root, subject, work, *stages, extra=()):
    """Run stages (import_tracking, then export/fit_flame...) on `root`/`subject` as `kind`."""
    ov = [
        f"work_dir={work}",
        "logger=none",
        f"dataset={kind}",
        f"dataset.root={root}",
        f"subject={subject}",
        "fit_flame.threads=2",
        "fit_flame.overlay_video=false",
        *[f"assets.{k}={real.assets[k]}" for k in ("flame2020", "flame_lmk_embedding_eyes")],
        *extra,
    ]
    outs = []
    for st in stages:
        cfg = compose(*ov, *st)
        outs.append(run_plan(cfg, subject_dir(cfg)))
    return subject_dir(cfg), outs


def _imavatar_px(folder, fit, size):
    data, shape, intr = imavatar_load(folder, size)
    verts = cf.flame_imavatar(
        fit.data, shape, np.stack(data["expr"]), np.stack(data["flame_pose"]).astype(float)
    )
    valid = np.flatnonzero(fit.track["valid"])
    lmk = cf.landmarks_on(verts, fit.data.faces, fit.emb, fit.bins[valid])
    return imavatar_project(lmk, np.stack(data["pose"])[:, None, :3, 3], intr)


def test_imavatar_folder_round_trip_and_refit_without_perception(real_export, tmp_path):
    fit = fit_of(real_export)
    src = real_export.subject.export_dir("imavatar")
    subj, outs = _import(
        real_export,
        "imavatar",
        src.parent,
        src.name,
        tmp_path / "w",
        ["stage=import_tracking"],
        ["stage=export", "export.formats=[imavatar]"],
    )
    size = tuple(int(v) for v in fit.track["image_size"])
    before = _imavatar_px(src, fit, size)
    after = _imavatar_px(subj.export_dir("imavatar"), fit, size)
    err = np.linalg.norm(after - before, axis=-1)
    assert err.max() < TOL_PX, f"IMAvatar -> import -> IMAvatar moved landmarks {err.max():.3f} px"
    kp = json.loads((src / "keypoint.json").read_text())
    lm = load_npz(subj.landmarks_npz)
    np.testing.assert_allclose(lm["points_px"][0], kp["1.png"], atol=1e-3)  # the detections
    # fit_flame re-fits on the imported detections; no perception stage runs
    _, (out,) = _import(
        real_export,
        "imavatar",
        src.parent,
        src.name,
        tmp_path / "w",
        ["stage=fit_flame", "force=true"],
    )
    assert out.ran == ["fit_flame"]
    own = json.loads(real_export.subject.manifest_path("fit_flame").read_text())
    rmse = out.results["fit_flame"].metrics["lmk_rmse_px"]
    assert rmse < own["metrics"]["lmk_rmse_px"] + 1.0


def _hravatar_px(folder, fit):
    """HRAvatar's loader camera on FLAME as its optimize.py defines the parameters (x4)."""
    d = json.loads((folder / "tracked_params.json").read_text())
    fx, fy, cx, cy = d["intrinsics"]
    w = h = 512
    fovx = 2 * np.arctan2(cx, fx)
    fovy = 2 * math.atan(h / (2 * (w / (2 * math.tan(fovx / 2)))))
    shape = np.asarray(d["shapecode"])[0, :100]
    names = sorted(k for k in d if k.endswith(".png"))
    valid = np.flatnonzero(fit.track["valid"])
    out = []
    for k, name in enumerate(names):
        e = d[name]
        v = 4 * cf.flame_standard(
            fit.data,
            shape,
            np.asarray(e["expcode"])[:, :50],
            np.asarray(e["fullposecode"], float),
            np.asarray(e["translation"], float),
        )
        lmk = cf.landmarks_on(v, fit.data.faces, fit.emb, fit.bins[valid[k : k + 1]])[0]
        w2c = np.diag([1.0, -1.0, -1.0, 1.0]) @ np.asarray(e["world_mat"])
        out.append(splat_project(lmk, w2c, fovx, fovy, w, h))
    return np.stack(out)


def test_hravatar_tracked_params_round_trip(real_export, tmp_path):
    fit = fit_of(real_export)
    src = tmp_path / "in" / "hr"
    shutil.copytree(real_export.subject.export_dir("hravatar"), src)
    (src / "flame_params.json").unlink()  # only what HRAvatar's trainer reads
    subj, _ = _import(
        real_export,
        "imavatar",
        src.parent,
        src.name,
        tmp_path / "w",
        ["stage=import_tracking"],
        ["stage=export", "export.formats=[hravatar]"],
    )
    err = np.linalg.norm(
        _hravatar_px(subj.export_dir("hravatar"), fit) - _hravatar_px(src, fit), axis=-1
    )
    assert err.max() < TOL_PX, f"HRAvatar -> import -> HRAvatar moved landmarks {err.max():.3f}"


def _ga_px(folder, fit):
    cams = read_cameras(folder, "train") + read_cameras(folder, "test")
    valid = np.flatnonzero(fit.track["valid"])
    out = {}
    for c2w, fovx, fovy, w, h, t, _ in cams:
        frame = next(
            f
            for s in ("train", "test")
            for f in json.loads((folder / f"transforms_{s}.json").read_text())["frames"]
            if f["timestep_index"] == t
        )
        m = np.load(folder / frame["flame_param_path"])
        pose = np.concatenate([m["rotation"], m["neck_pose"], m["jaw_pose"], m["eyes_pose"]], 1)
        v = cf.flame_standard(
            fit.data, m["shape"], m["expr"], pose.astype(float), m["translation"].astype(float)
        )
        lmk = cf.landmarks_on(v, fit.data.faces, fit.emb, fit.bins[valid[t : t + 1]])[0]
        out[t] = splat_project(lmk, np.linalg.inv(c2w), fovx, fovy, w, h)
    return np.stack([out[t] for t in sorted(out)])


def test_vhap_folder_round_trip(real_export, tmp_path):
    fit = fit_of(real_export)
    src = real_export.subject.export_dir("gaussianavatars")
    subj, _ = _import(
        real_export,
        "vhap",
        src.parent,
        src.name,
        tmp_path / "w",
        ["stage=import_tracking"],
        ["stage=export", "export.formats=[gaussianavatars]"],
    )
    err = np.linalg.norm(
        _ga_px(subj.export_dir("gaussianavatars"), fit) - _ga_px(src, fit), axis=-1
    )
    assert err.max() < TOL_PX, f"VHAP -> import -> GaussianAvatars moved landmarks {err.max():.3f}"


def test_insta_folder_gives_the_fits_landmarks(real_export, tmp_path):
    """INSTA folders hold meshes, not FLAME parameters: the 51 inner points and the irises are
    the fit's exactly; the jaw contour's yaw bin is estimated from the mesh (within a bin)."""
    fit = fit_of(real_export)
    src = real_export.subject.export_dir("insta")
    subj, _ = _import(
        real_export,
        "insta_tracked",
        src.parent,
        src.name,
        tmp_path / "w",
        ["stage=import_tracking"],
    )
    lm, iris = load_npz(subj.landmarks_npz), load_npz(subj.iris_npz)
    valid = np.flatnonzero(fit.track["valid"])
    err = np.linalg.norm(lm["points_px"] - fit.lmk_px[valid, :68], axis=-1)
    assert err[:, 17:].max() < TOL_PX, f"INSTA meshes: inner points {err[:, 17:].max():.3f} px"
    assert err[:, :17].mean() < 1.0 and err[:, :17].max() < 6.0  # contour: yaw bin +-1
    np.testing.assert_allclose(iris["iris_px"], fit.lmk_px[valid][:, [69, 68]], atol=TOL_PX)
    notes = json.loads((subj.root / "import.json").read_text())["notes"]
    assert any("fx=" in n for n in notes)  # the camera fit_flame needs


def _six_d(R: np.ndarray) -> np.ndarray:
    return R[..., :2, :].reshape(R.shape[:-2] + (6,))  # pytorch3d matrix_to_rotation_6d


def test_metrical_checkpoints_round_trip(real_export, tmp_path):
    """Checkpoints as metrical-tracker writes them -> import -> GaussianAvatars and IMAvatar."""
    fit = fit_of(real_export)
    tr = fit.track
    rng = np.random.default_rng(0)
    src = tmp_path / "in" / "actor"
    (src / "checkpoint").mkdir(parents=True)
    (src / "input").mkdir()
    T = 6
    yaw = np.deg2rad(rng.uniform(-25, 25, T))
    R_cam = np.stack(
        [np.diag([1.0, -1.0, -1.0]) @ Rotation.from_euler("y", a).as_matrix() for a in yaw]
    )
    t_cam = np.stack([rng.normal(0, 0.01, 3) + [0, 0, 1.1] for _ in range(T)])
    K = np.array([[1900.0, 0, 256.0], [0, 1900.0, 256.0], [0, 0, 1]])  # pytorch3d: w / 2
    jaw = Rotation.from_rotvec(tr["jaw_pose"][:T].astype(float)).as_matrix()
    eyes = Rotation.from_rotvec(tr["eyes_pose"][:T].reshape(T, 2, 3).astype(float)).as_matrix()
    shape300 = np.zeros(300, np.float32)
    shape300[:100] = tr["shape"]
    exp100 = np.zeros((T, 100), np.float32)
    exp100[:, :50] = tr["expr"][:T]
    for k in range(T):
        fid = f"{k:05d}"
        frame = {
            "flame": {
                "exp": exp100[k : k + 1],
                "shape": shape300[None],
                "tex": np.zeros((1, 50), np.float32),
                "sh": np.zeros((1, 9, 3), np.float32),
                "eyes": _six_d(eyes[k]).reshape(1, 12).astype(np.float32),
                "eyelids": np.zeros((1, 2), np.float32),
                "jaw": _six_d(jaw[k])[None].astype(np.float32),
            },
            "camera": {
                "R": _six_d(R_cam[k])[None].astype(np.float32),
                "t": t_cam[k][None].astype(np.float32),
                "fl": np.array([[7.4]], np.float32),
                "pp": np.zeros((1, 2), np.float32),
            },
            "opencv": {
                "R": R_cam[k][None].astype(np.float32),
                "t": t_cam[k][None].astype(np.float32),
                "K": K[None].astype(np.float32),
            },
            "img_size": np.array([512, 512]),
            "frame_id": fid,
            "global_step": k,
        }
        torch.save(frame, src / "checkpoint" / f"{fid}.frame")
        shutil.copy(real_export.subject.crop_frame_path(k), src / "input" / f"{fid}.png")
    # metrical-tracker's own projection: FLAME at the origin, x = R v + t, K with x + 0.5 centres
    pose = np.concatenate([np.zeros((T, 6)), tr["jaw_pose"][:T], tr["eyes_pose"][:T]], 1)
    v = cf.flame_standard(fit.data, shape300, exp100, pose.astype(float), np.zeros((T, 3)))
    from prep.importers.landmarks import view_bins

    bins = view_bins(
        np.concatenate(
            [np.concatenate([R_cam, t_cam[..., None]], 2), np.tile([[[0, 0, 0, 1.0]]], (T, 1, 1))],
            1,
        ),
        np.tile(np.eye(3), (T, 1, 1)),
        np.zeros((T, 3)),
    )
    lmk = cf.landmarks_on(v, fit.data.faces, fit.emb, bins)
    x = np.einsum("tij,tnj->tni", R_cam, lmk) + t_cam[:, None]
    truth = x[..., :2] / x[..., 2:] * K[0, 0] + K[0, 2] - 0.5  # in our integer-centre pixels
    subj, _ = _import(
        real_export,
        "metrical",
        src.parent,
        src.name,
        tmp_path / "w",
        ["stage=import_tracking"],
        ["stage=export", "export.formats=[gaussianavatars,imavatar]"],
    )
    ga = _ga_px(subj.export_dir("gaussianavatars"), fit_with_bins(fit, bins))
    cams = read_cameras(subj.export_dir("gaussianavatars"), "train")
    f = cams[0][3] / (2 * math.tan(cams[0][1] / 2))
    K_ga = np.array([[f, 0, 255.5], [0, f, 255.5], [0, 0, 1]])
    K_ours = K - [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]
    want = apply(crop_to_export(K_ours, K_ga), truth)
    err = np.linalg.norm(ga - want, axis=-1)
    assert err.max() < TOL_PX, f"metrical -> import -> GaussianAvatars: {err.max():.3f} px"
    ima = _imavatar_px(subj.export_dir("imavatar"), fit_with_bins(fit, bins), (512, 512))
    err = np.linalg.norm(ima - truth, axis=-1)
    assert err.max() < TOL_PX, f"metrical -> import -> IMAvatar: {err.max():.3f} px"


def fit_with_bins(fit, bins):
    """The fit's model and embedding with other frames' contour bins (imported frames)."""
    import copy

    out = copy.copy(fit)
    out.bins = bins
    out.track = {**fit.track, "valid": np.ones(len(bins), bool)}
    return out
