"""Photo collections: a folder of unrelated photos is detected and processed as photos.

The collection: real photos and frames of different people (../shared/data photos and clips,
matplotlib's grace_hopper), letterboxed to 512 x 512, so every image's neighbours are other
people. Landmark placement is checked against an independent oracle, dlib's 68-point predictor
(tests/vision/dlib_oracle.py); independence from the neighbours against the same images in
reverse order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from prep.io.files import load_npz, read_image, write_image
from prep.runner import run_plan
from prep.subject import subject_dir
from prep.vision.detect import box_centre
from tests.conftest import compose
from tests.vision.dlib_oracle import dlib_landmarks, nme
from tests.vision.perception_data import clip_frames, letterbox


def _images(shared_data: Path, clip_c01: Path, clip_c03: Path) -> list[np.ndarray]:
    photos = {p.name[:3]: read_image(p, "rgb") for p in (shared_data / "photos").iterdir()}
    hopper = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    c01 = clip_frames(clip_c01, 231)
    c03 = clip_frames(clip_c03, 1)
    # p11 is a full profile: no face for MediaPipe's mesh (an image to flag, not to bridge)
    imgs = [
        photos["p02"],
        c01[0],
        read_image(hopper, "rgb"),
        c03[0],
        photos["p08"],
        photos["p11"],
        c01[230],
        c01[150],
    ]
    return [letterbox(im) for im in imgs]


def _write(folder: Path, images: list[np.ndarray]) -> Path:
    for k, im in enumerate(images):
        write_image(folder / f"{k:02d}.png", im)
    return folder


def _landmarks(folder: Path, work: Path, *overrides: str):
    cfg = compose(
        f"work_dir={work}",
        "logger=none",
        "dataset=custom",
        f"dataset.images={folder}",
        "stage=landmarks",
        "landmarks.overlay=false",
        *overrides,
    )
    subject = subject_dir(cfg)
    run_plan(cfg, subject)
    return subject


def _in_image(subject) -> np.ndarray:
    """(T, 68, 2) final landmarks mapped to image pixels, NaN where not usable."""
    lm, ct = load_npz(subject.landmarks_npz), load_npz(subject.crop_npz)
    c2o = ct["crop_to_orig"]
    pts = lm["points_px"].astype(np.float64) @ np.swapaxes(c2o[:, :2, :2], 1, 2)
    pts += c2o[:, None, :2, 2]
    pts[~(lm["valid"] | lm["interpolated"])] = np.nan
    return pts


@pytest.fixture(scope="module")
def collection(tmp_path_factory, shared_data, clip_c01, clip_c03):
    root = tmp_path_factory.mktemp("collection")
    images = _images(shared_data, clip_c01, clip_c03)
    folder = _write(root / "photos", images)
    reversed_folder = _write(root / "reversed", images[::-1])
    return root, folder, reversed_folder


@pytest.mark.slow
def test_unrelated_photos_are_processed_as_photos(collection, caplog):
    root, folder, reversed_folder = collection
    with caplog.at_level(logging.INFO, logger="prep.stages.detect"):
        s = _landmarks(folder, root / "auto")
    said = [r.getMessage() for r in caplog.records if "photo collection" in r.getMessage()]
    assert len(said) == 1 and "not a sequence" in said[0]  # said so, in one line
    det, ct, lm = (load_npz(p) for p in (s.detections, s.crop_npz, s.landmarks_npz))
    assert not det["sequence"] and not det["interpolated"].any()
    assert str(ct["mode"]) == "per_image"
    ok = det["valid"]
    # every image cropped around its own face: the face centre sits at the crop's centre
    # (moved down by crop.shift_y = -0.1 face sides of a 2.3-side crop: +0.043 N)
    c = box_centre(det["box_xyxy"][ok].astype(np.float64))
    uv = (
        np.einsum("tij,tj->ti", ct["orig_to_crop"][ok][:, :2, :2], c)
        + ct["orig_to_crop"][ok][:, :2, 2]
    )
    np.testing.assert_allclose(uv, [[255.5, 255.5 + 0.1 / 2.3 * 512]] * ok.sum(), atol=1.0)
    # no temporal filter, no bridging: the profile photo is flagged, not filled from others
    assert not lm["valid"][5] and not lm["interpolated"].any()
    assert np.isnan(lm["points_px"][5]).all()
    v = lm["valid"]
    np.testing.assert_array_equal(lm["points_px"][v], lm["points_raw_px"][v])
    # each image's landmarks do not depend on its neighbours: the reversed folder agrees
    rev = load_npz(_landmarks(reversed_folder, root / "reversed_run").landmarks_npz)
    np.testing.assert_array_equal(lm["points_px"], rev["points_px"][::-1])


@pytest.mark.slow
def test_landmarks_of_a_collection_against_dlib(collection):
    """As photos, the 68 points stay where dlib puts them; as a video (main's treatment of an
    image folder: one static crop, One-Euro filter, bridging) they are dragged toward the
    neighbouring people."""
    root, folder, _ = collection
    oracle = dlib_landmarks(sorted(folder.glob("*.png")))
    photos = nme(_in_image(_landmarks(folder, root / "auto")), oracle)
    video = _landmarks(
        folder, root / "video", "dataset.sequence=true", "landmarks.backend.static_image_mode=true"
    )
    as_video = nme(_in_image(video), oracle)
    both = np.isfinite(photos) & np.isfinite(as_video)
    assert both.sum() >= 6
    assert np.mean(photos[both]) < 0.035  # 3.5 % of the face size
    assert np.mean(as_video[both]) > 1.5 * np.mean(photos[both])
    assert load_npz(video.detections)["sequence"]  # declared: no auto-detection


@pytest.mark.slow
def test_a_folder_of_video_frames_is_still_a_sequence(tmp_path, clip_c01):
    folder = _write(tmp_path / "frames", clip_frames(clip_c01, 60, step=3))
    s = _landmarks(folder, tmp_path / "work")
    assert load_npz(s.detections)["sequence"]
    assert str(load_npz(s.crop_npz)["mode"]) == "static"
    lm = load_npz(s.landmarks_npz)
    assert np.abs(lm["points_px"] - lm["points_raw_px"]).max() > 0.1  # the filter runs
