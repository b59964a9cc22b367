"""QA report: collects whatever stages ran, renders self-contained HTML, passes a browser check."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import unquote

import numpy as np
import pytest

from prep.config.export import ReportConfig
from prep.io.files import read_image, save_npz, write_image, write_json
from prep.io.video_writer import write_video
from prep.report.collect import collect, head_pose_deg, lmk_midpoint_dev_px
from prep.report.page import subject_page
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.export.synthetic_subject import INVALID, T, make_subject


def _perception(s: SubjectDir, t: int = T) -> None:
    rng = np.random.default_rng(1)
    valid = np.ones(t, bool)
    valid[5] = False
    reason = np.where(valid, "ok", "no_face")
    save_npz(
        s.detections,
        score=rng.uniform(0.8, 1, t).astype(np.float32),
        valid=valid,
        reason=reason,
        box_xyxy=np.zeros((t, 4), np.float32),
    )
    pts = rng.normal(20, 5, (1, 68, 2)) + rng.normal(0, 0.3, (t, 68, 2))
    pts[9] += 10.0  # a jittery frame
    save_npz(
        s.landmarks_npz,
        points_px=pts.astype(np.float32),
        valid=valid,
        scores=np.ones((t, 68), np.float32),
    )
    iris_ok = np.ones((t, 2), bool)
    iris_ok[2, 1] = False
    save_npz(
        s.iris_npz,
        iris_px=np.zeros((t, 2, 2), np.float32),
        valid=iris_ok,
        reason=np.where(iris_ok, "ok", "closed"),
        ear=np.full((t, 2), 0.3, np.float32),
    )
    write_json(s.video_json, {"n_frames": t, "fps": 25.0})
    for stage, sec in (("extract_frames", 1.5), ("detect", 3.0), ("landmarks", 2.0)):
        write_json(
            s.manifest_path(stage),
            {
                "stage": stage,
                "config_hash": "abc",
                "config": {stage: {"x": 1}},
                "started_at": f"2026-01-01T00:00:0{int(sec)}",
                "duration_s": sec,
                "n_frames": t,
                "n_flagged": 1,
                "metrics": {"valid_frac": 0.9},
            },
        )


def test_jitter_is_distance_to_temporal_midpoint():
    pts = np.zeros((5, 2, 2))
    pts[2] = 3.0  # frame 2 sticks out by (3, 3)
    jit = lmk_midpoint_dev_px(pts, np.ones(5, bool))
    assert np.isnan(jit[0]) and np.isnan(jit[-1])
    np.testing.assert_allclose(jit[1:4], [np.hypot(1.5, 1.5), np.hypot(3, 3), np.hypot(1.5, 1.5)])
    valid = np.ones(5, bool)
    valid[1] = False
    assert np.isnan(lmk_midpoint_dev_px(pts, valid)[2])


def test_head_pose_of_a_frontal_camera_is_the_flame_rotation():
    w2c = np.eye(4)[None].copy()
    w2c[0, :3, :3] = np.diag([1.0, -1.0, -1.0])
    yaw = head_pose_deg(np.array([[0.0, np.radians(30), 0.0]]), w2c)
    np.testing.assert_allclose(yaw, [[30.0, 0.0, 0.0]], atol=1e-9)


def test_report_degrades_to_what_ran(tmp_path):
    empty = SubjectDir(tmp_path / "empty")
    page = subject_page(collect(empty, ReportConfig()), empty, ReportConfig())
    assert "No stage has finished yet" in page and "<svg" not in page
    s = SubjectDir(tmp_path / "perc")
    _perception(s)
    summary = collect(s, ReportConfig())
    assert [x.title.split()[0] for x in summary.series] == ["Face", "Landmark", "Eye"]
    assert summary.flagged[2] == ["iris: closed"]
    assert "no face detected" in summary.flagged[5]
    assert (
        "landmark jitter (lmk_midpoint_dev_px)" in summary.flagged[9]
        and "lmk_rmse_px_median" not in summary.headline
    )
    full = make_subject(tmp_path / "full")
    _perception(full)
    summary = collect(full, ReportConfig())
    assert any("Head pose" in x.title for x in summary.series)
    assert any(x.title == "BFM fine landmark error (RMSE)" for x in summary.series)
    assert all("tracking invalid" in summary.flagged[i] for i in INVALID)


@pytest.fixture
def reported(compose_cfg, tmp_path):
    """Two subjects with perception (+ tracking for one) and overlays, reported via the engine."""
    work = tmp_path / "work" / "custom"
    subjects = [make_subject(work / "alpha"), SubjectDir(work / "bravo ü")]
    for s in subjects:
        _perception(s)
        frames = [np.full((32, 32, 3), 40 * k, np.uint8) for k in range(6)]
        write_video(s.overlay_dir("landmarks") / "landmarks.mp4", frames, fps=5)
        write_image(s.overlay_dir("landmarks") / "contact.png", frames[3])
    for k in range(2):
        write_image(subjects[1].crop_frame_path(5 + 4 * k), np.zeros((20, 20, 3), np.uint8))
    for s in subjects:
        cfg = compose_cfg("dataset=custom", f"subject='{s.name}'", "stage=report")
        out = run_plan(cfg, s)
        assert out.ran == ["report"]
    return subjects, work


def test_report_stage_writes_pages_and_index(reported, compose_cfg):
    subjects, work = reported
    index = (work / "index.html").read_text()
    hrefs = [unquote(h) for h in re.findall(r'href="([^"]+)"', index)]
    assert hrefs == ["alpha/report/index.html", "bravo ü/report/index.html"]
    assert all((work / h).exists() for h in hrefs)
    page = (subjects[0].report_dir / "index.html").read_text()
    assert page.count("<svg") >= 5 and "data:video/mp4;base64," in page
    small = subject_page(
        collect(subjects[0], ReportConfig(embed_total_mb=0)),
        subjects[0],
        ReportConfig(embed_total_mb=0),
    )
    assert "data:video/mp4" not in small and 'href="../overlays/landmarks/landmarks.mp4"' in small
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a CDN
    cfg = compose_cfg("dataset=custom", "subject=alpha", "stage=report")
    assert run_plan(cfg, subjects[0]).skipped == ["report"]
    write_json(subjects[0].manifest_path("detect"), {"stage": "detect", "duration_s": 9.0})
    assert run_plan(cfg, subjects[0]).ran == ["report"]  # an upstream re-run refreshes the page


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("headless browser test needs Debian package `chromium` (apt-get install chromium)")


@pytest.mark.slow
def test_page_renders_in_headless_chromium(reported, tmp_path):
    browser = _chromium()
    subjects, work = reported
    args = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    n_plots = {}
    for page in (subjects[0].report_dir / "index.html", work / "index.html"):
        dom = subprocess.run(
            [*args, "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert 'data-render-check="ok"' in dom.stdout, dom.stdout[-500:] + dom.stderr[-2000:]
        console_errors = [
            ln
            for ln in dom.stderr.splitlines()
            if "CONSOLE" in ln and ("error" in ln.lower() or "Uncaught" in ln)
        ]
        assert not console_errors, console_errors
        n_plots[page.parent.name] = int(re.search(r'data-n-plots="(\d+)"', dom.stdout).group(1))
    assert n_plots["report"] >= 5
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            *args,
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            (subjects[0].report_dir / "index.html").resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    img = read_image(shot)
    assert img.shape[0] > 1000 and img.std() > 10  # plots and thumbnails, not a blank page
