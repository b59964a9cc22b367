"""One-Euro filter, gap bridging and the jitter metric on synthetic tracks with known truth."""

from __future__ import annotations

import numpy as np

from prep.stages.landmarks import bridge_gaps
from prep.vision.landmarks.filter import inter_ocular_px, one_euro
from prep.vision.landmarks.metrics import bridge_midpoint_rms_px, lag_frames, similarity_align


def _face(t: int, rng, noise_px: float, motion_px_per_frame: float = 0.0) -> np.ndarray:
    """(t, 68, 2) a rigid random 'face' (IOD ~ 60 px) translating in x, plus i.i.d. noise."""
    base = rng.uniform(-60, 60, size=(68, 2))
    base[36:42] = base[36:42] * 0.1 + [-30, 0]
    base[42:48] = base[42:48] * 0.1 + [30, 0]
    shift = np.zeros((t, 1, 2))
    shift[:, 0, 0] = motion_px_per_frame * np.arange(t)
    return (base + 256 + shift + rng.normal(0, noise_px, (t, 68, 2))).astype(np.float32)


def test_filter_reduces_jitter_on_still_face():
    rng = np.random.default_rng(0)
    pts = _face(200, rng, noise_px=0.5)
    valid = np.ones(200, bool)
    out = one_euro(pts, valid, fps=25.0, scale_px=inter_ocular_px(pts))
    assert bridge_midpoint_rms_px(out, valid) < 0.5 * bridge_midpoint_rms_px(pts, valid)


def test_filter_follows_fast_motion_without_lag():
    rng = np.random.default_rng(1)
    pts = _face(100, rng, noise_px=0.3, motion_px_per_frame=8.0)  # 200 px/s, a fast head turn
    valid = np.ones(100, bool)
    out = one_euro(pts, valid, fps=25.0, scale_px=inter_ocular_px(pts))
    assert lag_frames(pts[20:], out[20:]) == 0
    clean = _face(100, np.random.default_rng(1), 0.0, 8.0)
    # steady-state error stays below one frame of motion
    assert np.abs(out[20:, :, 0] - clean[20:, :, 0]).mean() < 8.0


def test_filter_restarts_after_invalid_frames_and_never_fills_them():
    rng = np.random.default_rng(2)
    pts = _face(30, rng, noise_px=0.5)
    pts[15:] += 100.0  # the face jumps while undetected
    pts[12:15] = np.nan
    valid = np.ones(30, bool)
    valid[12:15] = False
    out = one_euro(pts, valid, fps=25.0)
    assert np.isnan(out[12:15]).all()
    np.testing.assert_array_equal(out[15], pts[15])  # restart: no pull from the stale track


def test_bridge_gaps_interpolates_short_interior_gaps_only():
    pts = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 68, 2), np.float32)
    valid = np.ones(10, bool)
    valid[[0, 3, 4, 6, 7, 8]] = False  # leading gap, gap of 2, gap of 3
    pts[~valid] = np.nan
    out, bridged = bridge_gaps(pts, valid, max_gap=2)
    assert bridged.tolist() == [False, False, False, True, True, False, False, False, False, False]
    np.testing.assert_allclose(out[3:5, 0, 0], [3, 4])
    assert np.isnan(out[0]).all() and np.isnan(out[6:9]).all()


def test_jitter_ignores_rigid_motion_and_similarity_align_recovers_transform():
    rng = np.random.default_rng(3)
    base = rng.uniform(-50, 50, (68, 2))
    t = np.arange(40) / 10.0
    ang, scale = 0.3 * np.sin(t), 1 + 0.2 * np.cos(t)
    rot = np.stack(
        [np.stack([np.cos(ang), -np.sin(ang)], -1), np.stack([np.sin(ang), np.cos(ang)], -1)], 1
    )
    pts = scale[:, None, None] * np.einsum("tij,kj->tki", rot, base) + (t[:, None, None] * 30 + 200)
    valid = np.ones(40, bool)
    assert bridge_midpoint_rms_px(pts, valid) < 1e-3
    noisy = pts + rng.normal(0, 1.0, pts.shape)
    assert bridge_midpoint_rms_px(noisy, valid) > 0.5
    aff = similarity_align(pts[:1], pts[5:6])
    mapped = pts[0] @ aff[0, :, :2].T + aff[0, :, 2]
    np.testing.assert_allclose(mapped, pts[5], atol=1e-6)
