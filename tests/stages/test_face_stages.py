"""Stages landmarks -> parsing -> iris end to end on the real head-turn clip (first 20 frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prep.io.files import load_npz, read_image, read_json, write_image
from prep.runner import run_plan
from prep.subject import subject_dir
from prep.vision.parsing import CLOTH, LABEL
from tests.conftest import compose

N = 20


def _cfg(work, clip, *overrides):
    return compose(
        f"work_dir={work}",
        "logger=none",
        "dataset=custom",
        f"dataset.video={clip}",
        f"extract_frames.max_frames={N}",
        *overrides,
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory, clip_c01):
    work = tmp_path_factory.mktemp("face")
    cfg = _cfg(work, clip_c01, "stage=iris")
    subject = subject_dir(cfg)
    outcome = run_plan(cfg, subject)
    return work, clip_c01, subject, outcome


@pytest.mark.slow
def test_stage_iris_runs_the_face_chain_and_writes_trainer_files(chain):
    _, _, s, outcome = chain
    assert {"landmarks", "matting", "parsing", "iris"} <= set(outcome.ran)
    kp = json.loads(s.keypoint_json.read_text())
    assert sorted(kp) == [f"{i:06d}.png" for i in range(N)]
    pts = np.array(list(kp.values()))
    assert pts.shape == (N, 68, 2) and np.isfinite(pts).all()
    iris = json.loads(s.iris_json.read_text())
    assert len(iris) == N and all(len(v) == 4 for v in iris.values())
    lm = load_npz(s.landmarks_npz)
    assert lm["dense_px"].shape == (N, 478, 3) and lm["valid"].all()
    # irises lie inside the face, left eye (a) on the image's right
    a, b = np.array(iris["000000.png"]).reshape(2, 2)
    assert a[0] > b[0] and pts[0, :, 0].min() < b[0] < a[0] < pts[0, :, 0].max()
    for i in (0, N - 1):
        rgba = read_image(s.image_path(i), "rgba")
        mask = read_image(s.mask_path(i), "gray")
        labels = read_image(s.parsing_path(i), "gray")
        np.testing.assert_array_equal(rgba[..., 3], mask)
        assert labels.max() < 19 and (labels == LABEL["skin"]).mean() > 0.02
        assert (mask[labels == CLOTH] == 0).all()  # mask_clothes=true by default
        assert (labels == CLOTH).any() and (mask > 0).mean() > 0.1
    for stage, name in (("landmarks", "landmarks"), ("parsing", "parsing"), ("iris", "iris")):
        d = s.overlay_dir(stage)
        assert (d / f"{name}.mp4").stat().st_size > 0 and (d / f"{name}_sheet.png").exists()


@pytest.mark.slow
def test_deleted_mask_reruns_parsing_for_that_frame_only(chain):
    work, clip, s, _ = chain
    keep = s.image_path(3).stat().st_mtime_ns
    s.mask_path(5).unlink()
    outcome = run_plan(_cfg(work, clip, "stage=iris"), s)
    assert "parsing" in outcome.ran and outcome.results["parsing"].n_skipped == N - 1
    assert s.mask_path(5).exists() and s.image_path(3).stat().st_mtime_ns == keep


@pytest.mark.slow
def test_frame_without_face_is_flagged_bridged_and_left_out_of_iris(chain):
    work, clip, s, _ = chain
    blank = np.full_like(read_image(s.crop_frame_path(7), "rgb"), 128)
    write_image(s.crop_frame_path(7), blank)
    run_plan(_cfg(work, clip, "stage=landmarks", "force=true"), s)
    lm = load_npz(s.landmarks_npz)
    assert not lm["valid"][7] and lm["reason"][7] == "no_face" and lm["interpolated"][7]
    assert np.isnan(lm["points_raw_px"][7]).all()  # never a stale detection
    assert np.isfinite(lm["points_px"][7]).all() and (lm["scores"][7] == 0).all()
    assert "000007.png" in json.loads(s.keypoint_json.read_text())
    run_plan(_cfg(work, clip, "stage=iris"), s)
    assert "000007.png" not in json.loads(s.iris_json.read_text())
    assert load_npz(s.iris_npz)["reason"][7].tolist() == ["no_face", "no_face"]


@pytest.mark.parametrize(
    "overrides",
    [
        ("landmarks=dlib",),
        ("landmarks=fan",),
        ("parsing=bisenet",),
        ("parsing=mesh", "landmarks=mediapipe"),
    ],
)
def test_backend_groups_compose(tmp_path, overrides):
    cfg = compose(f"work_dir={tmp_path}", "logger=none", *overrides)
    picked = dict(o.split("=") for o in overrides)
    assert cfg.landmarks.backend.name == picked.get("landmarks", "mediapipe")
    assert cfg.parsing.backend.name == picked.get("parsing", "mesh")
    assert cfg.parsing.mask_clothes is True


def test_bisenet_without_weights_fails_before_any_work(tmp_path, clip_c01):
    from prep.errors import MissingAssetError

    cfg = _cfg(
        tmp_path,
        clip_c01,
        "stage=parsing",
        "parsing=bisenet",
        f"assets.bisenet={tmp_path}/absent.pth",
    )
    with pytest.raises(MissingAssetError, match="bisenet"):
        run_plan(cfg, subject_dir(cfg))
    assert not subject_dir(cfg).frames_dir.exists()


@pytest.mark.slow
def test_new_crop_redoes_every_landmark_chunk(chain):
    """Landmark chunks are kept only for the crops they were detected on (their key once
    lacked the crop, so a new crop.scale reused landmarks of the old crops)."""
    work, clip, s, _ = chain
    before = load_npz(s.landmarks_npz)["points_px"]
    outcome = run_plan(_cfg(work, clip, "stage=landmarks", "crop.scale=2.0"), s)
    assert outcome.results["landmarks"].n_skipped == 0
    after = load_npz(s.landmarks_npz)["points_px"]
    # a tighter crop shows the face larger: the landmarks spread over more crop pixels
    assert np.nanstd(after[:, :, 0]) > 1.1 * np.nanstd(before[:, :, 0])


@pytest.mark.slow
def test_dense_mesh_is_an_output_of_the_landmarks_stage(tmp_path, clip_c01):
    """With dlib landmarks the landmarks stage itself writes the dense MediaPipe mesh that iris and
    mesh parsing need (landmarks/dense.npz, declared in its writes); iris and parsing only read
    it: the landmarks folder is the same, file for file and byte time, after they ran."""
    cfg = _cfg(tmp_path, clip_c01, "stage=landmarks", "landmarks=dlib")
    s = subject_dir(cfg)
    run_plan(cfg, s)
    dense = load_npz(s.dense_npz)
    assert dense["dense_px"].shape == (N, 478, 3) and dense["valid"].mean() > 0.9
    assert "dense_px" not in load_npz(s.landmarks_npz)
    assert read_json(s.manifest_path("landmarks"))["written"]["landmarks/dense.npz"] == 1
    before = {p.name: p.stat().st_mtime_ns for p in s.landmarks_dir.iterdir()}
    run_plan(_cfg(tmp_path, clip_c01, "stage=iris", "landmarks=dlib"), s)
    assert {p.name: p.stat().st_mtime_ns for p in s.landmarks_dir.iterdir()} == before
    assert load_npz(s.iris_npz)["valid"].mean() > 0.9
