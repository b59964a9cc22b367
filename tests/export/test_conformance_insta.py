"""INSTA-pytorch reads our export of a real clip as its loader does, and the meshes it deforms
sit where the fit drew the head (landmarks within 0.5 px).

The steps below are ours, written from reading Zielon/INSTA-pytorch ``insta/provider.py``
136 (``canonical.obj``), 155-189 (transforms_{split}.json), 218-285 (per frame, every path
derived from ``file_path`` by string replacement: RGBA image, ``meshes/*.obj``, ``depth/*.png``
divided by 1000, ``seg_mask/*.png`` read with IMREAD_UNCHANGED keeping ``[..., 2:3]``,
``flame/exp/*.txt`` first 16 values) and 331-347 (fl_x, fl_y, cx, cy), ``insta/utils.py``
44-123 (rays through pixel ``i + 0.5``, camera-to-world in OpenCV axes) and 479-486 (region codes
120/130/140 weighted, depth where 90 < seg <= 250), and Zielon/INSTA ``scripts/transforms.py``
(split: train = all but the last N, test = last N, val = last 20), ``scripts/simplification.py``
(the simplified topology) and ``scripts/patches/face-parsing`` (the codes).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from prep.export.common import read_obj
from tests.export import consumer_flame as cf
from tests.export.conformance import TOL_PX, fit_of

pytestmark = pytest.mark.slow

# INSTA's segmentation codes: 0 and 70..250 in steps of 10, except 220
INSTA_CODES = {0, *range(70, 251, 10)} - {220}


def insta_project(points, c2w, fl_x, fl_y, cx, cy):
    """Invert get_rays: a point on the ray of pixel index (i, j) has x/z = (i + 0.5 - cx) / fl_x."""
    w2c = np.linalg.inv(c2w)
    p = points @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack(
        [cx + fl_x * p[..., 0] / p[..., 2] - 0.5, cy + fl_y * p[..., 1] / p[..., 2] - 0.5], -1
    )


def test_insta_loader_and_projection(real_export):
    fit = fit_of(real_export)
    root = real_export.subject.export_dir("insta")
    canon_v, canon_f = read_obj(root / "canonical.obj")
    np.testing.assert_array_equal(canon_f, real_export.insta_faces)  # INSTA's topology
    assert len(canon_v) == 5023
    valid = np.flatnonzero(fit.track["valid"])
    got, want, seen = [], [], set()
    for split in ("train", "val", "test"):
        transform = json.loads((root / f"transforms_{split}.json").read_text())
        H, W = int(transform["h"]), int(transform["w"])
        fl_x, fl_y, cx, cy = (transform[k] for k in ("fl_x", "fl_y", "cx", "cy"))
        for f in transform["frames"]:
            f_path = str(root / f["file_path"])
            image = cv2.imread(f_path, cv2.IMREAD_UNCHANGED)
            assert image.shape == (H, W, 4)
            verts, faces = read_obj(f_path.replace("images", "meshes").replace("png", "obj"))
            np.testing.assert_array_equal(faces, real_export.insta_faces)
            depth = cv2.imread(f_path.replace("images", "depth"), cv2.IMREAD_UNCHANGED)
            assert depth.dtype == np.uint16 and depth.shape == (H, W)
            seg = cv2.imread(f_path.replace("images", "seg_mask"), cv2.IMREAD_UNCHANGED)[..., 2:3]
            assert seg.shape == (H, W, 1) and set(np.unique(seg)) <= INSTA_CODES
            exp = np.loadtxt(f_path.replace("images", "/flame/exp").replace("png", "txt"))[:16]
            assert exp.shape == (16,)
            k = int(f["file_path"].split("/")[-1][:-4])
            if k in seen:
                continue
            seen.add(k)
            c2w = np.array(f["transform_matrix"], dtype=np.float32).astype(np.float64)
            lmk = cf.landmarks_on(verts[None], fit.data.faces, fit.emb, fit.bins[valid[k : k + 1]])
            px = insta_project(lmk[0], c2w, fl_x, fl_y, cx, cy)
            got.append(px)
            want.append(fit.lmk_px[valid[k]])
            # depth/ holds the camera z of that mesh, in millimetres, at the nose tip's pixel
            w2c = np.linalg.inv(c2w)
            z_mm = (lmk[0, 30] @ w2c[:3, :3].T + w2c[:3, 3])[2] * 1000
            u, v = np.round(px[30]).astype(int)
            assert abs(int(depth[v, u]) - z_mm) < 5
            face = seg[..., 0] == 250  # skin: depth supervised there (90 < seg <= 250)
            assert face.sum() > 1000 and (depth[face] > 0).mean() > 0.5
    assert sorted(seen) == list(range(len(valid)))
    err = np.linalg.norm(np.stack(got) - np.stack(want), axis=-1)
    assert err.max() < TOL_PX, f"INSTA draws the landmarks {err.max():.3f} px off"
    train = json.loads((root / "transforms_train.json").read_text())["frames"]
    test = json.loads((root / "transforms_test.json").read_text())["frames"]
    assert len(train) + len(test) == len(valid) and train and test
