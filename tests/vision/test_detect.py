"""Face detection backends on real images and the one-subject tracker on synthetic candidates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from prep.config.perception import DetectConfig, DlibDetectConfig, MediapipeDetectConfig
from prep.errors import BadConfigError
from prep.vision.detect import box_centre, box_side, track_subject
from prep.vision.detect_backends import make_detector
from tests.vision.perception_data import photo


def _cands(per_frame: list[list[list[float]]], M: int = 4):
    """Pad per-frame candidate lists [[x0,y0,x1,y1], ...] into tracker inputs."""
    T = len(per_frame)
    boxes = np.full((T, M, 4), np.nan, np.float32)
    count = np.zeros(T, np.int32)
    for t, c in enumerate(per_frame):
        if c:
            boxes[t, : len(c)] = c
        count[t] = len(c)
    return boxes, np.ones((T, M), np.float32), np.full((T, M, 6, 2), np.nan, np.float32), count


SUBJECT = [100, 100, 200, 200]


def test_track_never_jumps_to_a_larger_bystander():
    frames = []
    for t in range(30):
        s = 60 + 10 * t  # a bystander walks in and grows far larger than the subject
        frames.append([[400, 80, 400 + s, 80 + s], [100 + t, 100, 200 + t, 200]])
    frames[0] = [SUBJECT]
    tr = track_subject(*_cands(frames), DetectConfig())
    assert tr.valid.all() and (tr.reason == "ok").all()
    assert (box_centre(tr.box_xyxy)[:, 0] < 300).all()


def test_short_gaps_interpolated_long_gaps_invalid():
    frames = [[SUBJECT] for _ in range(40)]
    for t in range(10, 13):
        frames[t] = []  # 3 frames: bridged
    for t in range(20, 35):
        frames[t] = []  # 15 frames: too long
    frames[38] = [[400, 400, 450, 450]]  # only a far-away face: not the subject
    tr = track_subject(*_cands(frames), DetectConfig(max_gap=8))
    assert tr.interpolated[10:13].all() and tr.valid[10:13].all()
    assert (tr.reason[10:13] == "interpolated").all()
    np.testing.assert_allclose(tr.box_xyxy[11], SUBJECT)
    assert not tr.valid[20:35].any() and (tr.reason[20:35] == "no_face").all()
    assert tr.reason[38] == "interpolated" and tr.valid[38]  # bystander rejected, gap bridged
    assert np.isnan(tr.box_xyxy[20:35]).all()


def test_track_reacquires_after_long_absence_near_last_position():
    frames = [[SUBJECT]] * 5 + [[]] * 30 + [[[600, 100, 640, 140], [150, 110, 250, 210]]] * 5
    tr = track_subject(*_cands(frames), DetectConfig(reacquire_after=25))
    assert (tr.reason[35:] == "ok").all()
    np.testing.assert_allclose(tr.box_xyxy[36], [150, 110, 250, 210])


@pytest.mark.parametrize("backend", ["mediapipe", "dlib"])
def test_backends_find_the_face_in_a_photo(shared_data, backend):
    img = photo(shared_data, "p02")
    settings = {"mediapipe": MediapipeDetectConfig(), "dlib": DlibDetectConfig()}[backend]
    with make_detector(DetectConfig(backend=settings)) as det:
        found = det.detect(img)
    assert len(found) >= 1
    h, w = img.shape[:2]
    main = found.box_xyxy[np.argmax(box_side(found.box_xyxy))]  # FFHQ crops may show a 2nd face
    c, s = box_centre(main), box_side(main)
    assert 0.3 * w < c[0] < 0.7 * w and 0.25 * h < c[1] < 0.75 * h
    assert 0.25 * w < s < 0.8 * w


def test_mediapipe_grayscale_small_and_4k(shared_data):
    img = photo(shared_data, "p02")
    h, w = img.shape[:2]
    gray = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, 2)
    small = cv2.resize(img, (224, 224 * h // w), interpolation=cv2.INTER_AREA)
    # 4K: the photo placed off-centre in a 3840x2160 frame at ~2x.
    big = np.full((2160, 3840, 3), 90, np.uint8)
    up = cv2.resize(img, (2 * w, 2 * h))
    big[100 : 100 + 2 * h, 1500 : 1500 + 2 * w] = up[:2060, :2340]
    with make_detector(DetectConfig(backend=MediapipeDetectConfig())) as det:
        ref, g, s, b = (det.detect(x) for x in (img, gray, small, big))
    assert len(g) == len(s) == len(b) == 1
    np.testing.assert_allclose(g.box_xyxy[0], ref.box_xyxy[0], atol=0.03 * w)
    np.testing.assert_allclose(s.box_xyxy[0] * (w / 224), ref.box_xyxy[0], atol=0.05 * w)
    expect_4k = ref.box_xyxy[0] * 2 + [1500, 100, 1500, 100]
    np.testing.assert_allclose(b.box_xyxy[0], expect_4k, atol=0.05 * 2 * w)


def test_black_frame_has_no_face():
    with make_detector(DetectConfig(backend=MediapipeDetectConfig())) as det:
        assert len(det.detect(np.zeros((256, 256, 3), np.uint8))) == 0


def test_subject_is_the_dominant_track_not_the_largest_first_face():
    # Frame 0: a passer-by close to the camera is larger; he leaves after 3 frames.
    frames = [[[400, 0, 700, 300], SUBJECT]] * 3 + [[SUBJECT]] * 30
    tr = track_subject(*_cands(frames), DetectConfig())
    np.testing.assert_allclose(tr.box_xyxy, np.tile(SUBJECT, (33, 1)))


def test_bad_detect_settings_are_config_errors():
    for bad in ({"min_score": 1.5}, {"max_side": 0}):
        with pytest.raises(BadConfigError, match="detect."):
            make_detector(DetectConfig(backend=MediapipeDetectConfig(), **bad))
