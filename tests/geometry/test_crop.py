"""Crop transforms: exact orig<->crop maps, intrinsics round trips, warping, box statistics."""

from __future__ import annotations

import numpy as np
import pytest

from prep.config.perception import CropConfig
from prep.errors import BadConfigError, NoUsableFramesError
from prep.geometry.crop import (
    box_to_orig_to_crop,
    fxfycxcy_to_crop,
    fxfycxcy_to_orig,
    intrinsics_to_crop,
    intrinsics_to_orig,
    invert_affine,
    transform_points,
    warp_to_crop,
)
from prep.geometry.crop_boxes import box_accel_px, crop_boxes, face_margin, overflow_px
from prep.models.camera import K_matrix


def test_box_edges_map_to_crop_edges_and_back():
    box = np.array([[10.25, -40.5, 310.25, 259.5], [-0.5, -0.5, 511.5, 511.5]])
    M = box_to_orig_to_crop(box, 512)
    corners = np.stack([box[:, :2], box[:, 2:]], 1)
    np.testing.assert_allclose(transform_points(M, corners), [[[-0.5, -0.5], [511.5, 511.5]]] * 2)
    # The whole 512 image as the box is the identity (pixel centres at integers).
    np.testing.assert_allclose(M[1], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(
        invert_affine(M) @ M, np.broadcast_to(np.eye(3), M.shape), atol=1e-12
    )


def test_intrinsics_round_trip_and_projection_agree():
    rng = np.random.default_rng(0)
    box = np.array([[100.0, 50.0, 700.0, 650.0], [120.5, 40.25, 520.5, 440.25]])
    M = box_to_orig_to_crop(box, 512)
    K = K_matrix(1539.67, 1541.0, 959.5, 539.5)
    K_crop = intrinsics_to_crop(K, M)
    np.testing.assert_allclose(intrinsics_to_orig(K_crop, invert_affine(M)), [K, K], rtol=1e-14)
    X = rng.normal(size=(20, 3)) + [0, 0, 5]
    uv_orig = (X @ K.T)[:, :2] / X[:, 2:]
    for t in range(2):
        uv_crop = (X @ K_crop[t].T)[:, :2] / X[:, 2:]
        np.testing.assert_allclose(
            transform_points(M[t : t + 1], uv_orig[None])[0], uv_crop, atol=1e-9
        )


def test_fxfycxcy_round_trip():
    box = np.array([[100.0, 50.0, 700.0, 650.0], [-20.0, 10.0, 380.0, 410.0]])
    M = box_to_orig_to_crop(box, 512)
    crop = fxfycxcy_to_crop([1200.0, 1210.0, 639.5, 359.5], M)
    a = 512 / 600  # u = a (x - x0) - 0.5
    np.testing.assert_allclose(crop[0], [1200 * a, 1210 * a, a * 539.5 - 0.5, a * 309.5 - 0.5])
    np.testing.assert_allclose(
        fxfycxcy_to_orig(crop, invert_affine(M)), [[1200.0, 1210.0, 639.5, 359.5]] * 2, rtol=1e-14
    )


def test_warp_is_exact_for_integer_boxes_and_pads():
    img = np.arange(64 * 80, dtype=np.float32).reshape(64, 80)
    box = np.array([[9.5, 4.5, 41.5, 36.5]])  # pixels 10..41 x 5..36, scale 1
    out = warp_to_crop(img, box_to_orig_to_crop(box, 32)[0], 32)
    np.testing.assert_array_equal(out, img[5:37, 10:42])
    # Past the right border: replicate repeats the last column, constant fills.
    box = np.array([[59.5, 0.0 - 0.5, 91.5, 31.5]])
    M = box_to_orig_to_crop(box, 32)[0]
    rep = warp_to_crop(img, M, 32, "replicate")
    const = warp_to_crop(img, M, 32, "constant", 7)
    np.testing.assert_array_equal(rep[:, 25:], np.repeat(img[:32, 79:80], 7, 1))
    assert (const[:, 21:] == 7).all() and (const[:, :20] == img[:32, 60:80]).all()


def test_warp_4k_downscale_keeps_geometry():
    """A 4K gradient cropped to 512 (area pre-filter path) samples the right positions."""
    h, w = 2160, 3840
    img = np.broadcast_to(np.arange(w, dtype=np.float32)[None] * 0.05, (h, w)).copy()
    box = np.array([[1000.0, 300.0, 2600.0, 1900.0]])
    M = box_to_orig_to_crop(box, 512)
    out = warp_to_crop(img, M[0], 512)
    u = np.arange(512, dtype=np.float64)
    x = (u - M[0, 0, 2]) / M[0, 0, 0]
    np.testing.assert_allclose(out[256], x * 0.05, atol=0.02)


def _track(T: int, rng) -> tuple[np.ndarray, np.ndarray]:
    c = np.stack([300 + 40 * np.sin(np.arange(T) / 10), 200 + np.zeros(T)], 1)
    c += rng.normal(scale=3.0, size=c.shape)  # detector noise
    side = 150 + rng.normal(scale=4.0, size=(T, 1))
    return np.concatenate([c - side / 2, c + side / 2], 1), np.ones(T, bool)


def test_static_box_is_one_robust_box():
    box, valid = _track(100, np.random.default_rng(1))
    box[7] = [0, 0, 20, 20]  # an outlier frame moves neither centre nor size much
    cfg = CropConfig(mode="static", scale=2.0, shift_y=0.0, static_size_quantile=0.5)
    out = crop_boxes(box, valid, cfg)
    assert np.ptp(out, axis=0).max() == 0
    side = out[0, 2] - out[0, 0]
    assert side == pytest.approx(300, rel=0.03)
    assert box_accel_px(out, 512) == 0.0


def test_smooth_box_follows_motion_without_jitter():
    rng = np.random.default_rng(2)
    box, valid = _track(200, rng)
    cfg = CropConfig(mode="smooth", scale=2.0, shift_y=0.0)
    raw = crop_boxes(
        box,
        valid,
        CropConfig(mode="smooth", scale=2.0, shift_y=0.0, smooth_sigma=0, smooth_sigma_size=0),
    )
    out = crop_boxes(box, valid, cfg)
    assert box_accel_px(out, 512) < 0.1 * box_accel_px(raw, 512)
    centre = (out[:, 0] + out[:, 2]) / 2
    truth = 300 + 40 * np.sin(np.arange(200) / 10)
    assert np.abs(centre - truth)[10:-10].max() < 8.0  # zero-phase: no lag, mild damping


def test_invalid_frames_get_interpolated_boxes_and_no_face_raises():
    box, valid = _track(30, np.random.default_rng(3))
    valid[10:20] = False
    box[10:20] = np.nan
    out = crop_boxes(box, valid, CropConfig(mode="smooth"))
    assert np.isfinite(out).all()
    with pytest.raises(NoUsableFramesError):
        crop_boxes(box, np.zeros(30, bool), CropConfig())


@pytest.mark.parametrize(
    "bad",
    [{"scale": 0.0}, {"static_size_quantile": 2}],  # mode, pad: enums, refused at compose
)
def test_bad_crop_settings_are_config_errors(bad):
    box, valid = _track(5, np.random.default_rng(4))
    with pytest.raises(BadConfigError, match="crop."):
        crop_boxes(box, valid, CropConfig(**bad))


def test_face_margin():
    crop = np.array([[0.0, 0, 100, 100]] * 3)
    face = np.array([[20.0, 30, 70, 80], [-5.0, 10, 50, 60], [np.nan] * 4])
    np.testing.assert_allclose(face_margin(face, crop), [0.2, -0.05, np.nan])


def test_overflow_px():
    box = np.array([[-0.5, -0.5, 99.5, 99.5], [-10.5, 0, 50, 50], [0, 0, 120.5, 60]])
    np.testing.assert_allclose(overflow_px(box, (100, 100)), [0, 10, 21])


@pytest.mark.parametrize("side", [300.0, 700.0, 1500.0])  # upscale, mild and 2x+ downscale
def test_padding_outside_the_frame_is_exact_and_the_mask_is_the_frame(side):
    """Geometric fact: a crop pixel shows the frame iff its centre's preimage lies in the
    frame's rectangle [-0.5, W - 0.5) x [-0.5, H - 0.5); checked per pixel via crop_to_orig."""
    from prep.geometry.crop import inframe_mask, inframe_xyxy

    rng = np.random.default_rng(1)
    h, w = 480, 640
    img = rng.integers(30, 256, (h, w, 3), dtype=np.uint8)
    box = np.array([[-120.25, 300.5 - side / 2, side - 120.25, 300.5 + side / 2]])
    M = box_to_orig_to_crop(box, 256)
    rect = inframe_xyxy(M, (h, w), 256)[0]
    inside = inframe_mask(rect, 256)
    v, u = np.mgrid[0:256, 0:256].astype(np.float64)
    c2o = invert_affine(M)[0]
    x, y = c2o[0, 0] * u + c2o[0, 2], c2o[1, 1] * v + c2o[1, 2]
    np.testing.assert_array_equal(inside, (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5))
    assert 0 < inside.mean() < 1
    out = warp_to_crop(img, M[0], 256, "constant", 7, inframe=inside)
    assert (out[~inside] == 7).all()
    assert out[inside].min() >= 30 - 1  # no dark fringe: the edge is replicated half a pixel
    streaks = warp_to_crop(img, M[0], 256, "replicate")
    assert streaks[~inside].std() > 5  # what replicate padding leaves there


def test_inside_frame_moves_and_shrinks_the_box():
    from prep.geometry.crop_boxes import fit_inside

    box = np.array([[-50.0, 10.0, 350.0, 410.0], [100.0, 100.0, 900.0, 900.0]])
    out = fit_inside(box, (480, 640))
    np.testing.assert_allclose(out[0], [-0.5, 10.0, 399.5, 410.0])  # moved right, same size
    np.testing.assert_allclose(out[1, 2:] - out[1, :2], [480.0, 480.0])  # shrunk to the height
    assert (overflow_px(out, (480, 640)) == 0).all()
