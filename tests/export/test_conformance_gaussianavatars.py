"""GaussianAvatars reads our export of a real clip as its loader does and draws the fitted head
where the fit drew it (within 0.5 px).

The steps below are ours, written from reading ShenhanQian/GaussianAvatars:
``scene/__init__.py`` 92-94 (canonical_flame_param.npz selects the dynamic loader) and 38-62
(images opened as RGBA and composited over the background), ``scene/dataset_readers.py``
189-245 (``file_path``, ``transform_matrix`` with ``c2w[:3, 1:3] *= -1``, per-frame
``camera_angle_x``, fovy from it, ``timestep_index``), 283-295 and 297-352 (flame_param per
timestep from transforms_{train,val,test}.json), ``scene/flame_gaussian_model.py`` 43-85 (shape,
expr (1, n), rotation/neck/jaw/eyes/translation, static_offset) and 117-135, ``flame_model/
flame.py`` 37 (flame2023.pkl by default) and 509-537 (FLAME + translation), ``scene/cameras.py``
44-47 and ``utils/graphics_utils.py`` (view and symmetric projection matrices), with
graphdeco-inria/diff-gaussian-rasterization ``cuda_rasterizer/auxiliary.h`` ndc2Pix.
VHAP's ``vhap/export_as_nerf_dataset.py`` (split_json, write_canonical_flame_param) sets the rest.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prep.io.files import read_image
from tests.export import consumer_flame as cf
from tests.export.conformance import (
    TOL_PX,
    apply,
    crop_to_export,
    fit_of,
    image_matches_crop,
    pil_rgba,
    splat_project,
)

pytestmark = pytest.mark.slow


def read_cameras(folder, split):
    """readCamerasFromTransforms: (c2w OpenCV, fovx, fovy, w, h, timestep, image path) rows."""
    contents = json.loads((folder / f"transforms_{split}.json").read_text())
    rows = []
    for frame in contents["frames"]:
        file_path = (
            frame["file_path"] if ".png" in frame["file_path"] else frame["file_path"] + ".png"
        )
        c2w = np.array(frame["transform_matrix"])
        c2w[:3, 1:3] *= -1
        w, h = frame["w"], frame["h"]
        fovx = frame.get("camera_angle_x", contents.get("camera_angle_x"))
        fovy = 2 * math.atan(h / (2 * (w / (2 * math.tan(fovx / 2)))))
        rows.append((c2w, fovx, fovy, w, h, frame["timestep_index"], folder / file_path))
    return rows


def test_gaussianavatars_loader_and_projection(real_export):
    fit = fit_of(real_export)
    folder = real_export.subject.export_dir("gaussianavatars")
    assert (folder / "canonical_flame_param.npz").exists()
    cams = (
        read_cameras(folder, "train") + read_cameras(folder, "val") + read_cameras(folder, "test")
    )
    meshes = {}
    for split in ("train", "test"):
        for frame in json.loads((folder / f"transforms_{split}.json").read_text())["frames"]:
            meshes[frame["timestep_index"]] = dict(np.load(folder / frame["flame_param_path"]))
    first = meshes[0]
    assert first["shape"].shape == (300,) and first["expr"].shape == (1, 100)
    assert first["static_offset"].shape == (1, 5023, 3)
    for k in ("rotation", "neck_pose", "jaw_pose", "translation"):
        assert first[k].shape == (1, 3)
    assert first["eyes_pose"].shape == (1, 6)
    valid = np.flatnonzero(fit.track["valid"])
    got, want = [], []
    for c2w, fovx, fovy, w, h, t, path in cams:
        rgba = pil_rgba(path)  # convert("RGBA"): an RGB file gets alpha 255
        assert rgba.shape == (h, w, 4)
        m = meshes[t]
        pose = np.concatenate([m["rotation"], m["neck_pose"], m["jaw_pose"], m["eyes_pose"]], 1)
        v = cf.flame_standard(
            fit.data,
            first["shape"],
            m["expr"],
            pose.astype(float),
            m["translation"].astype(float),
            first["static_offset"],
        )
        lmk = cf.landmarks_on(v, fit.data.faces, fit.emb, fit.bins[valid[t : t + 1]])[0]
        got.append(splat_project(lmk, np.linalg.inv(c2w), fovx, fovy, w, h))
        f = w / (2 * math.tan(fovx / 2))
        K_consumer = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
        want.append(apply(crop_to_export(fit.track["K"], K_consumer), fit.lmk_px[valid[t]]))
    err = np.linalg.norm(np.stack(got) - np.stack(want), axis=-1)
    assert err.max() < TOL_PX, f"GaussianAvatars draws the landmarks {err.max():.3f} px off"
    # the composite GaussianAvatars makes is the crop moved with its camera
    c2w, fovx, fovy, w, h, t, path = cams[0]
    rgba = pil_rgba(path)
    f = w / (2 * math.tan(fovx / 2))
    D = crop_to_export(
        fit.track["K"], np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    )
    crop = read_image(real_export.subject.crop_frame_path(int(valid[t])))
    assert image_matches_crop(rgba[..., :3], crop, D, rgba[..., 3]) < 6.0
    info = json.loads((folder / "prep_export.json").read_text())
    assert info["model"] == "flame2020" and any("flame2023" in n for n in info["notes"])
    split = {
        s: json.loads((folder / f"transforms_{s}.json").read_text())["timestep_indices"]
        for s in ("train", "val", "test")
    }
    n = len(valid)
    assert len(split["train"]) == math.ceil(0.7 * n) and split["val"] == []  # VHAP, one camera
