"""Pixels that are not there: a crop box that leaves the frame, on the real anchor clip c03.

c03 is a tight 512 x 512 head shot, so the default crop (2.3 x the face box, ~577 px) leaves the
frame on all four sides. The geometric checks: the in-frame mask the crop records is the
projection of the source frame's rectangle, computed here independently per pixel through
crop_to_orig; no pixel outside it carries anything (image/ RGB is the pad value, alpha, matte,
mask, labels are 0); with crop.inside_frame=true the box stays inside the frame instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from prep.geometry.crop import CropTransforms, inframe_reader
from prep.geometry.crop_boxes import overflow_px
from prep.io.files import load_npz, read_image
from prep.runner import run_plan
from prep.subject import subject_dir
from tests.conftest import compose

N = 6


def _run(work, clip, *overrides):
    cfg = compose(
        f"work_dir={work}",
        "logger=none",
        "dataset=custom",
        f"dataset.video={clip}",
        f"extract_frames.max_frames={N}",
        "landmarks.overlay=false",
        "parsing.overlay=false",
        *overrides,
    )
    subject = subject_dir(cfg)
    run_plan(cfg, subject)
    return subject


def _frame_rect_in_crop(crop_to_orig: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """(N, N) bool: crop pixel centres whose preimage lies in the frame [-0.5, W-0.5)^2."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    x = crop_to_orig[0, 0] * u + crop_to_orig[0, 1] * v + crop_to_orig[0, 2]
    y = crop_to_orig[1, 0] * u + crop_to_orig[1, 1] * v + crop_to_orig[1, 2]
    h, w = hw
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


@pytest.fixture(scope="module")
def padded(tmp_path_factory, clip_c03):
    return _run(tmp_path_factory.mktemp("pad"), clip_c03, "stage=albedo")


@pytest.mark.slow
def test_outside_the_frame_is_constant_and_never_foreground(padded):
    s = padded
    ct = CropTransforms.load(s)
    h, w = (int(v) for v in ct.orig_hw)
    assert (overflow_px(ct.box_xyxy, (h, w)) > 20).all()  # the box leaves the frame
    assert "inframe_xyxy" in load_npz(s.crop_npz)
    reader = inframe_reader(s)
    for i in range(N):
        inside = reader(i)
        expected = _frame_rect_in_crop(ct.crop_to_orig[i], (h, w), ct.image_size)
        np.testing.assert_array_equal(inside, expected)
        assert 0.6 < inside.mean() < 0.95 and not inside[0].any() and not inside[:, -1].any()
        rgba = read_image(s.image_path(i), "rgba")
        assert (rgba[~inside] == [0, 0, 0, 0]).all()  # pad value 0, alpha 0: exactly
        for path in (s.alpha_path(i), s.mask_path(i), s.parsing_path(i)):
            assert (read_image(path, "gray")[~inside] == 0).all(), path
        assert (read_image(s.albedo_path(i), "rgb")[~inside] == 0).all()
        # inside the frame, the crop is the frame: no dark fringe along its edges
        crop = read_image(s.crop_frame_path(i), "rgb").astype(int)
        assert np.abs(rgba[..., :3][inside].astype(int) - crop[inside]).max() == 0
        # The JPEG crop frame: the padding is black, up to ringing in the 16x16 blocks along
        # the edge (no streaks: those replicated the edge colours all the way out)
        ys, xs = np.nonzero(inside)
        far = np.ones_like(inside)
        far[max(ys.min() - 16, 0) : ys.max() + 17, max(xs.min() - 16, 0) : xs.max() + 17] = False
        assert far.any() and crop[far].max() <= 2


@pytest.mark.slow
def test_inside_frame_keeps_the_box_in_the_frame(tmp_path, clip_c03, padded):
    s = _run(tmp_path, clip_c03, "stage=matting", "crop.inside_frame=true")
    ct = CropTransforms.load(s)
    assert (overflow_px(ct.box_xyxy, tuple(ct.orig_hw)) == 0).all()
    assert all(ct.inframe_mask(i).all() for i in range(N))
    # the face stays in the crop, and matting finds the subject
    det = load_npz(s.detections)
    box = det["box_xyxy"]
    assert (box[:, :2] >= ct.box_xyxy[:, :2]).all() and (box[:, 2:] <= ct.box_xyxy[:, 2:]).all()
    assert read_image(s.alpha_path(0), "gray").mean() > 0.2 * 255
