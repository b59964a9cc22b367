"""Iris centres: order/sides, validity rules, and the vectorised point-in-polygon test."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from prep.vision import iris as iris_mod
from prep.vision.iris import iris_from_mesh, points_in_polygons
from prep.vision.landmarks import mapping as m
from tests.vision.face_data import frontal_mesh


@pytest.fixture(scope="module")
def mesh(shared_data):
    dense, _ = frontal_mesh(shared_data / "photos")
    return dense


def test_open_eyes_valid_and_order_is_subject_left_then_right(mesh):
    res = iris_from_mesh(mesh[None], np.array([True]))
    assert res.valid.tolist() == [[True, True]]
    a, b = res.iris_px[0]
    assert a[0] > b[0]  # a = subject's left eye = image right in an unmirrored photo
    np.testing.assert_allclose(res.iris_px[0], mesh[[473, 468], :2])
    assert res.to_json_rows().shape == (1, 4)


def test_closed_turned_away_outside_and_missing_face_are_flagged(mesh):
    frames = np.repeat(mesh[None], 4, axis=0)
    # 0: close the right eye (upper lid onto the lower lid)
    frames[0, m.RIGHT_EYE_UPPER[1:-1], 1] = frames[0, m.RIGHT_EYE_LOWER[1:-1], 1]
    # 1: squeeze the left eye horizontally, as when it turns away behind the nose
    c = frames[1, m.LEFT_EYE_UPPER].mean(0)
    idx = np.r_[m.LEFT_EYE_UPPER, m.LEFT_EYE_LOWER]
    frames[1, idx, 0] = c[0] + 0.3 * (frames[1, idx, 0] - c[0])
    # 2: the right iris centre far outside its eye
    frames[2, m.RIGHT_IRIS_CENTRE, 1] -= 40.0
    valid_face = np.array([True, True, True, False])
    res = iris_from_mesh(frames, valid_face)
    assert res.reason[0].tolist() == ["", "closed"]
    assert res.reason[1, 0] == "turned_away" and res.valid[1, 1]
    assert res.reason[2].tolist() == ["", "outside_eye"]
    assert res.reason[3].tolist() == ["no_face", "no_face"]
    assert np.isnan(res.iris_px[3]).all()  # never a stale value


def test_points_in_polygons_matches_opencv():
    rng = np.random.default_rng(0)
    t = 200
    ang = np.sort(rng.uniform(0, 2 * np.pi, (t, 12)), axis=1)
    rad = rng.uniform(5, 20, (t, 12))
    polys = np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1)
    pts = rng.uniform(-20, 20, (t, 2))
    fast = points_in_polygons(pts, polys)
    slow = [
        cv2.pointPolygonTest(polys[i].astype(np.float32), tuple(pts[i]), False) > 0
        for i in range(t)
    ]
    assert fast.tolist() == slow


def test_iris_needs_dense_refined_mesh():
    with pytest.raises(ValueError, match="478"):
        iris_from_mesh(np.zeros((2, 468, 3)), np.ones(2, bool))
    assert iris_mod.eye_aspect_ratio(np.zeros((1, 478, 3))).shape == (1, 2)


def test_profile_photo_far_eye_turned_away_and_far_jaw_down_weighted(shared_data):
    from prep.config.face import LandmarksConfig, MediapipeLandmarksConfig
    from prep.vision.landmarks import make_backend

    settings = MediapipeLandmarksConfig(static_image_mode=True)
    with make_backend(LandmarksConfig(backend=settings)) as be:
        res = be.detect([shared_data / "photos" / "p11_profile_aflw00181.jpg"])
    assert res.valid[0]
    iris = iris_from_mesh(res.dense_px, res.valid)
    assert sorted(iris.reason[0].tolist()) == ["", "turned_away"]
    far_jaw = slice(0, 8) if iris.reason[0, 1] == "turned_away" else slice(9, 17)
    assert res.scores[0, far_jaw].max() < 0.8 and res.scores[0, 17:].min() == 1.0
