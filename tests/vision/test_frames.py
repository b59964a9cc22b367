"""Reduced-size JPEG decoding keeps the pixel convention: crops match full-size decoding."""

from __future__ import annotations

import numpy as np

from prep.geometry.crop import box_to_orig_to_crop, warp_to_crop
from prep.io.files import write_image
from prep.vision.frames import read_rgb, reduced_to_orig, reduction


def test_reduction_choices(tmp_path):
    jpg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    downscale = (0.5, 1.0, 1.9, 2.0, 3.9, 4.0, 20.0)
    assert [reduction(d, jpg) for d in downscale] == [1, 1, 1, 2, 2, 4, 8]
    assert reduction(20.0, png) == 1


def test_crop_from_reduced_decode_matches_full_decode(tmp_path):
    h, w = 2160, 3840
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 25), 128 + 100 * np.sin(yy / 25), 0 * xx + 128], -1)
    path = tmp_path / "frame.jpg"
    write_image(path, img.astype(np.uint8), 95)
    box = box_to_orig_to_crop(np.array([[1000.0, 300.0, 2600.0, 1900.0]]), 512)[0]
    full = warp_to_crop(read_rgb(path), box, 512).astype(float)
    r = reduction(1 / box[0, 0], path)
    assert r == 2
    small = warp_to_crop(read_rgb(path, r), box @ reduced_to_orig(r), 512).astype(float)
    assert np.abs(small - full).mean() < 1.5
    # A wrong half-pixel convention would shift the crop by ~0.3 crop pixels: visible in x.
    shifted = warp_to_crop(read_rgb(path, r), box @ np.diag([r, r, 1.0]), 512).astype(float)
    assert np.abs(small - full)[..., 0].mean() < 0.5 * np.abs(shifted - full)[..., 0].mean()
