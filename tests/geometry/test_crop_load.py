"""CropTransforms.load: the one reader of crop/crop.npz, with the ingest's cut box composed."""

from __future__ import annotations

import numpy as np
import pytest

from prep.errors import MissingInputError
from prep.geometry.crop import CropTransforms, box_to_orig_to_crop, invert_affine
from prep.io.files import save_npz, write_json


def test_load_composes_the_cut_box(tmp_subject):
    with pytest.raises(MissingInputError, match="stage=crop"):
        CropTransforms.load(tmp_subject)
    box = np.array([[100.0, 50.0, 356.0, 306.0]] * 3)
    M = box_to_orig_to_crop(box, 512)
    save_npz(
        tmp_subject.crop_npz,
        orig_to_crop=M,
        crop_to_orig=invert_affine(M),
        box_xyxy=box,
        image_size=np.array(512),
        valid=np.ones(3, bool),
    )
    ct = CropTransforms.load(tmp_subject)
    np.testing.assert_allclose(ct.source_to_crop, M)  # no cut box: frames are the source
    write_json(tmp_subject.video_json, {"crop_xywh": [40, 30, 800, 800], "n_frames": 3})
    ct = CropTransforms.load(tmp_subject)
    src = np.array([500.0, 200.0, 1.0])  # a source pixel is frame pixel (460, 170)
    np.testing.assert_allclose(ct.source_to_crop[0] @ src, M[0] @ [460.0, 170.0, 1.0])
    np.testing.assert_allclose(ct.orig_to_crop, M)  # frames/ -> crop unchanged
