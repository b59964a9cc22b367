"""Inputs with too little in them for temporal metrics: one photo, a noise clip with two faces.

Both once crashed the landmark metrics (``ValueError: All-NaN slice``) on every run; now every
face stage and the report finish, and undefined metrics are NaN (a single photo is a photo
collection, with no temporal metrics at all).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from prep.io.files import load_npz, read_json
from prep.io.video_writer import write_video
from prep.pipeline import read_manifest
from prep.runner import run_plan
from prep.subject import subject_dir
from tests.conftest import compose
from tests.vision.perception_data import clip_frames


def _run(work, source: str, stage: str):
    cfg = compose(f"work_dir={work}", "logger=none", "dataset=custom", source, f"stage={stage}")
    subject = subject_dir(cfg)
    return run_plan(cfg, subject), subject


def _check_chain(work, source: str, n: int, n_faces: int, sequence: bool) -> None:
    for _ in range(2):  # the re-run must not crash either (it once did, every time)
        _run(work, source, "iris")
        _, s = _run(work, source, "report")
    lm = load_npz(s.landmarks_npz)
    assert len(lm["valid"]) == n and lm["valid"].sum() == n_faces
    man = read_manifest(s, "landmarks")
    assert man["metrics"]["valid_frac"] == pytest.approx(n_faces / n)
    # a video's undefined lag is NaN; a photo has no track, so no temporal metrics at all
    assert np.isnan(man["metrics"]["fast_lag_frames"]) if sequence else len(man["metrics"]) == 1
    assert len(read_json(s.iris_json)) == n_faces
    assert len(list(s.mask_dir.glob("*.png"))) == n
    assert (s.report_dir / "index.html").stat().st_size > 0
    assert read_manifest(s, "report")["n_frames"] == n


@pytest.mark.slow
def test_folder_with_one_photo(tmp_path, shared_data):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(next((shared_data / "photos").glob("p02*")), folder)
    _check_chain(tmp_path / "work", f"dataset.images={folder}", 1, 1, sequence=False)


@pytest.mark.slow
def test_noise_clip_with_a_face_in_two_frames(tmp_path, clip_c03, caplog):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(20)]
    face = clip_frames(clip_c03, 1)[0]
    frames[3] = frames[12] = face
    video = tmp_path / "noise.mp4"
    write_video(video, iter(frames), fps=25)
    with caplog.at_level("INFO", logger="prep.stages.landmarks"):
        _check_chain(tmp_path / "work", f"dataset.video={video}", 20, 2, sequence=True)
    # two faces 9 frames apart define no nose-bridge jitter: the log line says so, not "nan px"
    (line,) = {r.getMessage() for r in caplog.records if r.getMessage().startswith("landmarks:")}
    assert "nose-bridge jitter n/a (raw n/a)" in line and "nan" not in line


def test_iris_and_report_survive_frames_without_any_face(tmp_subject):
    """The dense mesh can be all-invalid even when another landmark backend found faces."""
    import warnings

    from prep.config.export import ReportConfig
    from prep.io.files import save_npz
    from prep.report.collect import collect
    from prep.vision.iris import iris_from_mesh

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" either
        res = iris_from_mesh(np.full((3, 478, 3), np.nan, np.float32), np.zeros(3, bool))
        assert not res.valid.any() and (res.reason == "no_face").all()
        save_npz(
            tmp_subject.landmarks_npz,
            points_px=np.full((3, 68, 2), np.nan),
            valid=np.zeros(3, bool),
        )
        save_npz(tmp_subject.iris_npz, valid=res.valid, reason=res.reason, ear=res.ear)
        summary = collect(tmp_subject, ReportConfig())
    assert summary.n_frames == 3 and sorted(summary.flagged) == [0, 1, 2]
    assert summary.headline["iris_valid_frac"] == 0.0
