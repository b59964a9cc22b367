"""Landmark track metrics on inputs that cannot define them: one frame, isolated detections."""

from __future__ import annotations

import numpy as np
import pytest

from prep.stages.landmarks import _metrics
from prep.vision.landmarks.metrics import bridge_midpoint_rms_px, lag_frames, mean_deviation_px


def _track(t: int, valid: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    pts = rng.uniform(100, 400, (t, 68, 2)) + np.arange(t)[:, None, None]
    pts[~valid] = np.nan
    return pts


def test_lag_and_deviation_are_nan_without_two_consecutive_detections():
    # A 20-frame clip where the face is found only in frames 3 and 12: no frame-to-frame
    # velocity exists, so no lag can be measured (main raised "All-NaN slice" here).
    valid = np.zeros(20, bool)
    valid[[3, 12]] = True
    pts = _track(20, valid)
    assert np.isnan(lag_frames(pts, pts))
    assert np.isnan(bridge_midpoint_rms_px(pts, valid))
    assert mean_deviation_px(pts, pts + 1.0) == pytest.approx(np.sqrt(2.0))  # frames 3, 12
    assert np.isnan(mean_deviation_px(pts[:3], pts[:3]))


def test_metrics_of_a_single_photo_and_of_all_invalid_frames():
    one = _track(1, np.ones(1, bool))
    m = _metrics(one, one, np.ones(1, bool))
    assert m["valid_frac"] == 1.0 and m["fast_dev_px"] == 0.0
    assert np.isnan(m["bridge_midpoint_rms_px"]) and np.isnan(m["fast_lag_frames"])
    none = _track(5, np.zeros(5, bool))
    m = _metrics(none, none, np.zeros(5, bool))
    assert m["valid_frac"] == 0.0 and all(np.isnan(m[k]) for k in m if k != "valid_frac")


def test_lag_is_still_measured_on_a_track_with_gaps():
    valid = np.ones(40, bool)
    valid[10:13] = False
    raw = _track(40, valid)
    late = np.roll(raw, 2, axis=0)  # the "filtered" track is two frames behind
    assert lag_frames(raw[5:], late[5:]) == 2.0
