"""Every landmark backend keeps the 68-point contract and flags frames without a face."""

from __future__ import annotations

import numpy as np
import pytest

from prep.config.backends import SCHEMAS
from prep.config.face import DlibLandmarksConfig, FanLandmarksConfig, LandmarksConfig
from prep.io.files import write_image
from prep.vision.landmarks import LandmarkResult, make_backend
from prep.vision.landmarks.dlib_backend import predictor_path
from prep.vision.landmarks.fan_backend import FanLandmarks
from tests.vision.face_data import photo_results


def _check_contract(res: LandmarkResult, n: int) -> None:
    assert res.points_px.shape == (n, 68, 2) and res.points_px.dtype == np.float32
    assert res.scores.shape == (n, 68)
    assert res.valid.shape == (n,) and res.reason.shape == (n,)
    assert np.all((res.scores >= 0) & (res.scores <= 1))
    assert np.isnan(res.points_px[~res.valid]).all()
    assert np.isfinite(res.points_px[res.valid]).all()
    assert (res.reason[res.valid] == "").all() and (res.reason[~res.valid] != "").all()


@pytest.mark.parametrize("backend", ["mediapipe", "dlib"])
def test_backend_68_points_on_faces_and_flags_blank_and_broken_frames(
    backend, shared_data, tmp_path
):
    photos = shared_data / "photos"
    blank = tmp_path / "blank.png"
    write_image(blank, np.full((256, 256, 3), 127, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [photos / "p02_frontal_smile_ffhq00018.png", blank, broken]
    settings = SCHEMAS[("landmarks", backend)]().for_input(sequence=False)  # photos
    with make_backend(LandmarksConfig(backend=settings)) as be:
        res = be.detect(paths)
    _check_contract(res, 3)
    assert res.valid.tolist() == [True, False, False]
    assert res.reason[1] == "no_face" and res.reason[2] == "unreadable_frame"
    assert (res.dense_px is not None) == (backend == "mediapipe")
    # the points lie on the face: inside the image, eyes above the mouth
    p = res.points_px[0]
    assert p[36:48, 1].mean() < p[48:68, 1].mean()


def test_dlib_runs_inside_a_given_box(shared_data):
    photos = str(shared_data / "photos")
    free = photo_results(photos, "dlib").points_px[0]
    box = np.r_[free.min(0) - 20, free.max(0) + 20][None]
    with make_backend(LandmarksConfig(backend=DlibLandmarksConfig())) as be:
        boxed = be.detect([shared_data / "photos" / "p02_frontal_smile_ffhq00018.png"], box)
    assert boxed.valid[0]
    iod = np.linalg.norm(free[36:42].mean(0) - free[42:48].mean(0))
    assert np.linalg.norm(boxed.points_px[0] - free, axis=-1).mean() < 0.1 * iod


def test_dlib_predictor_found_without_pkg_resources():
    assert predictor_path().name == "shape_predictor_68_face_landmarks.dat"


@pytest.mark.weights
def test_fan_real_weights_68_points(shared_data):
    """Needs face-alignment (`make fan`) and the two files it loads in assets.fan_dir's default."""
    import os
    from pathlib import Path

    pytest.importorskip("face_alignment")
    fan_dir = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache/torch")) / "hub/checkpoints"
    if not (fan_dir / "2DFAN4-11f355bf06.pth.tar").is_file():
        pytest.skip(f"no 2DFAN4-11f355bf06.pth.tar in {fan_dir}")
    with FanLandmarks(FanLandmarksConfig(), fan_dir=fan_dir) as be:
        res = be.detect([shared_data / "photos" / "p02_frontal_smile_ffhq00018.png"])
    _check_contract(res, 1)
    assert res.valid[0]
