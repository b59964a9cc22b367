"""Tracking inputs: intrinsics stay in the source video's pixels when the ingest cut a box."""

from __future__ import annotations

import numpy as np
import pytest

from prep.geometry.crop import fxfycxcy_to_crop
from prep.io.files import read_json, write_json
from prep.track.flame_data import camera_intrinsics_orig, load_tracking_data
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_sequence import make_sequence, write_subject


@pytest.fixture(scope="module")
def oracle(tiny_flame_assets):
    return FlameOracle.from_assets(tiny_flame_assets, 10, 10)


def test_annotation_box_offset_is_composed_into_the_crop_transform(oracle, tmp_subject):
    seq = make_sequence(oracle, 4, size=256)
    write_subject(tmp_subject, seq, frames=False)
    plain = load_tracking_data(tmp_subject)
    # As HDTF's ingest records it: frames were cut at (300, 40) from a 1280x720 source.
    meta = read_json(tmp_subject.video_json)
    meta.update(crop_xywh=[300, 40, 256, 256], probe={"width": 1280, "height": 720})
    write_json(tmp_subject.video_json, meta)
    boxed = load_tracking_data(tmp_subject)
    np.testing.assert_array_equal(boxed.orig_hw, [720, 1280])
    # A principal point given in source pixels lands 300/40 px further left/up in the crop.
    src = np.array([1500.0, 1500.0, 640.0, 360.0])
    np.testing.assert_allclose(
        fxfycxcy_to_crop(src, boxed.orig_to_crop[0]),
        fxfycxcy_to_crop(src - [0, 0, 300, 40], plain.orig_to_crop[0]),
    )
    # The default principal point is the source's centre, not the box's.
    assert camera_intrinsics_orig(boxed.orig_hw, None, None, None, None)[2:] == (639.5, 359.5)
