"""Stage extract_frames end to end: real CLI runs, kill + resume, every dataset kind."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prep.io.files import TMP_PREFIX, load_npz, read_image, read_json
from prep.io.synthetic import make_clip, pattern_frame, read_index
from prep.pipeline import registered_stages
from prep.runner import run_plan
from prep.subject import subject_dir
from tests.conftest import compose

REPO = Path(__file__).resolve().parents[2]


def _cli(work: Path, *overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "launch.py",
        "stage=extract_frames",
        "logger=none",
        f"work_dir={work}",
        f"hydra.run.dir={work}/hydra",
        *overrides,
    ]
    env = {**os.environ, "AVATAR_PREP_PROGRESS": "0"}
    return subprocess.run(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=env,
    )


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _mtimes(folder: Path, *but: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name not in but}


def _run(compose_cfg, *overrides):
    cfg = compose_cfg("stage=extract_frames", *overrides)
    subject = subject_dir(cfg)
    return run_plan(cfg, subject), subject


@pytest.mark.slow
def test_real_clip_extract_skip_restore_force(clip_c01, tmp_path):
    args = ("dataset=custom", f"dataset.video={clip_c01}")
    r = _cli(tmp_path, *args)
    assert r.returncode == 0, r.stdout
    frames = tmp_path / "custom" / clip_c01.stem / "frames"
    meta = read_json(frames.parent / "meta" / "video.json")
    assert len(list(frames.iterdir())) == 400 and meta["n_frames"] == 400
    assert (meta["width"], meta["height"], meta["fps"]) == (512, 512, 25.0)
    assert np.allclose(meta["timestamps_s"], np.arange(400) / 25.0)
    before = _digests(frames)
    mtime = (frames / "000123.jpg").stat().st_mtime_ns
    mtimes = _mtimes(frames, "000123.jpg")

    # Re-runs in-process (the CLI's start-up, importing every stage module, is not the point).
    cfg = compose(f"work_dir={tmp_path}", "logger=none", "stage=extract_frames", *args)
    subject = subject_dir(cfg)
    registered_stages()
    t0 = time.perf_counter()
    assert run_plan(cfg, subject).skipped == ["extract_frames"]
    assert time.perf_counter() - t0 < 2.0
    assert (frames / "000123.jpg").stat().st_mtime_ns == mtime

    (frames / "000123.jpg").unlink()
    out = run_plan(cfg, subject)
    assert out.ran == ["extract_frames"] and out.results["extract_frames"].n_skipped == 399
    assert _digests(frames) == before
    assert _mtimes(frames, "000123.jpg") == mtimes  # the other frames were kept, not rewritten

    forced = compose(
        f"work_dir={tmp_path}", "logger=none", "stage=extract_frames", "force=true", *args
    )
    out = run_plan(forced, subject)
    assert out.ran == ["extract_frames"] and out.results["extract_frames"].n_skipped == 0
    assert (frames / "000122.jpg").stat().st_mtime_ns > mtime and _digests(frames) == before


@pytest.mark.slow
def test_sigkill_halfway_then_resume_is_byte_identical(tmp_path):
    clip = make_clip(tmp_path / "long.mp4", n_frames=600, size=(480, 360), preset="ultrafast")
    args = ("dataset=custom", f"dataset.video={clip}", "extract_frames.workers=1")
    ref_cfg = compose(f"work_dir={tmp_path / 'ref'}", "logger=none", "stage=extract_frames", *args)
    run_plan(ref_cfg, subject_dir(ref_cfg))
    ref_frames = tmp_path / "ref" / "custom" / "long" / "frames"

    work = tmp_path / "killed"
    frames = work / "custom" / "long" / "frames"
    cmd = [
        sys.executable,
        "launch.py",
        "stage=extract_frames",
        "logger=none",
        f"work_dir={work}",
        f"hydra.run.dir={work}/hydra",
        *args,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if frames.is_dir() and len(os.listdir(frames)) >= 200:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "extraction finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_partial = len([n for n in os.listdir(frames) if not n.startswith(TMP_PREFIX)])
    assert 0 < n_partial < 600
    assert not (work / "custom" / "long" / ".manifests" / "extract_frames.json").exists()
    # A leftover temp file must never count as a finished frame.
    (frames / f"{TMP_PREFIX}stray.jpg").write_bytes(b"half a jpeg")

    r = _cli(work, *args)
    assert r.returncode == 0, r.stdout
    assert "kept from a previous run" in r.stdout
    assert _digests(frames) == _digests(ref_frames)
    assert not [n for n in os.listdir(frames) if n.startswith(TMP_PREFIX)]
    meta, ref_meta = (read_json(p / ".." / "meta" / "video.json") for p in (frames, ref_frames))
    assert meta["timestamps_s"] == ref_meta["timestamps_s"] and meta["n_frames"] == 600


def test_audio_meta_and_resampled_frames(compose_cfg, tmp_path):
    clip = make_clip(tmp_path / "talk.mp4", n_frames=50, size=(64, 48), audio_hz=300.0)
    out, subject = _run(
        compose_cfg,
        "dataset=custom",
        f"dataset.video={clip}",
        "extract_frames.fps=10",
        "extract_frames.audio_rate=16000",
    )
    assert out.ran == ["extract_frames"]
    meta = read_json(subject.video_json)
    assert meta["n_frames"] == 20 and meta["fps"] == 10 and meta["probe"]["fps"] == 25.0
    idx = [read_index(read_image(subject.frames_dir / n)) for n in subject.frame_names()]
    # Target k at k/10 s takes the nearest 25 fps frame; a tie (k odd) goes to the later one.
    assert idx == [math.ceil(k * 2.5) for k in range(20)]
    with wave.open(str(subject.audio_wav)) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2
        assert abs(w.getnframes() / 16000 - 2.0) < 0.01
    assert meta["audio"]["sample_rate"] == 16000
    # Changing the rate re-runs and leaves no frame of the old setting behind.
    out, subject = _run(
        compose_cfg, "dataset=custom", f"dataset.video={clip}", "extract_frames.ext=png"
    )
    assert out.ran == ["extract_frames"]
    names = subject.frame_names()
    assert len(os.listdir(subject.frames_dir)) == len(names) == 50
    assert [read_index(read_image(subject.frames_dir / n)) for n in names] == list(range(50))


def test_rotated_phone_clip_is_written_upright(compose_cfg, tmp_path):
    clip = make_clip(tmp_path / "phone.mp4", n_frames=4, size=(64, 48), rotation_deg=-90)
    _, subject = _run(
        compose_cfg, "dataset=custom", f"dataset.video={clip}", "extract_frames.ext=png"
    )
    rgb = read_image(subject.frame_path(0))
    assert rgb.shape == (64, 48, 3) and read_json(subject.video_json)["rotation_deg"] == 270
    upright = np.rot90(rgb, 1)
    assert np.abs(upright.astype(int) - pattern_frame(0, 64, 48)).mean() < 4


def test_image_folder_with_exif_rotation(compose_cfg, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(pattern_frame(i, 40, 30)).save(folder / f"{i}.png")
    stored = np.ascontiguousarray(np.rot90(pattern_frame(3, 40, 30), -1))  # shown rotated back
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes the CCW turn of the stored pixels
    Image.fromarray(np.ascontiguousarray(np.rot90(stored, 2))).save(
        folder / "3.jpg", exif=exif, quality=98
    )
    _, subject = _run(
        compose_cfg, "dataset=custom", f"dataset.images={folder}", "extract_frames.ext=png"
    )
    meta = read_json(subject.video_json)
    assert meta["n_frames"] == 4 and meta["fps"] == 25.0 and meta["audio"] is None
    assert [read_index(read_image(subject.frame_path(i))) for i in range(4)] == [0, 1, 2, 3]


def test_insta_ingest_writes_frames_alpha_and_identity_crop(compose_cfg, tmp_path):
    folder = tmp_path / "insta" / "bala" / "images"
    folder.mkdir(parents=True)
    for i in range(4):
        rgba = np.zeros((32, 32, 4), np.uint8)
        rgba[..., :3] = pattern_frame(i, 32, 32)
        rgba[8:24, 8:24, 3] = 255
        Image.fromarray(rgba, "RGBA").save(folder / f"{i:05d}.png")
    tf = {"w": 32, "h": 32, "fl_x": 40.0, "fl_y": 40.0, "cx": 16.0, "cy": 16.0}
    (folder.parent / "transforms.json").write_text(json.dumps(tf))
    overrides = ("dataset=insta", f"dataset.root={tmp_path / 'insta'}", "subject=bala")
    out, subject = _run(compose_cfg, *overrides)
    assert out.ran == ["extract_frames"]
    alpha = read_image(subject.alpha_path(2), mode="gray")
    assert alpha[16, 16] == 255 and alpha[2, 2] == 0
    assert read_index(read_image(subject.crop_frame_path(2))) == 2
    crop = load_npz(subject.crop_npz)
    assert crop["orig_to_crop"].shape == (4, 3, 3) and np.allclose(crop["crop_to_orig"], np.eye(3))
    assert int(crop["image_size"]) == 32 and crop["valid"].all()
    assert read_json(subject.video_json)["intrinsics"] == {
        "fx": 40.0,
        "fy": 40.0,
        "cx": 16.0,
        "cy": 16.0,
    }
    assert run_plan(compose_cfg("stage=extract_frames", *overrides), subject).skipped
    subject.alpha_path(1).unlink()  # an ingest-owned output went missing: re-run restores it
    out, _ = _run(compose_cfg, *overrides)
    assert out.ran == ["extract_frames"] and subject.alpha_path(1).exists()


def test_hdtf_clip_range_and_crop_box(compose_cfg, tmp_path):
    root = tmp_path / "hdtf"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "WDA_annotion_time.txt").write_text("Talk.mp4 00:01-00:02.5\n")
    # Box annotated on the 24-pixel-high release video; our copy is 48 high -> scaled by 2.
    (root / "annotations" / "WDA_crop_wh.txt").write_text("Talk_0.mp4 4 10 2 10\n")
    (root / "annotations" / "WDA_resolution.txt").write_text("Talk.mp4 24\n")
    make_clip(root / "Talk.mp4", n_frames=100, size=(64, 48), audio_hz=200.0)
    out, subject = _run(
        compose_cfg,
        "dataset=hdtf",
        f"dataset.root={root}",
        "subject=Talk_0",
        "extract_frames.ext=png",
    )
    meta = read_json(subject.video_json)
    assert meta["n_frames"] == 38 and meta["crop_xywh"] == [8, 4, 20, 20]
    assert meta["source_start_s"] == 1.0 and meta["source_end_s"] == 2.5
    assert np.allclose(meta["timestamps_s"], np.arange(38) / 25)  # on the clip's own clock
    first = read_image(subject.frame_path(0))
    assert first.shape == (20, 20, 3)
    full = pattern_frame(25, 64, 48)[4:24, 8:28]
    assert np.abs(first.astype(int) - full).mean() < 4  # frame 25 = t 1.0 s, cut to the box
    with wave.open(str(subject.audio_wav)) as w:
        assert abs(w.getnframes() / w.getframerate() - 1.5) < 0.01  # the annotated range


@pytest.mark.slow
def test_bad_input_is_one_clear_line(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello\n" * 50)
    r = _cli(tmp_path, "dataset=custom", f"dataset.video={tmp_path / 'notes.mp4'}")
    assert r.returncode == 2
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "not a video" in lines[0] and "Traceback" not in r.stdout


def test_demo_dataset(compose_cfg):
    out, subject = _run(compose_cfg, "dataset=demo")
    assert out.ran == ["extract_frames"] and subject.name == "carphone"
    meta = read_json(subject.video_json)
    assert meta["n_frames"] == 120 and (meta["width"], meta["height"]) == (176, 144)
    assert len(os.listdir(subject.frames_dir)) == 120 and meta["audio"] is None


def _vm_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


@pytest.mark.slow
def test_memory_stays_flat_with_video_length(compose_cfg, tmp_path):
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak-RSS mark (Linux)
    except OSError:
        pytest.skip("cannot reset the peak RSS mark here")
    growth = {}
    for n in (40, 400):
        clip = make_clip(tmp_path / f"c{n}.mp4", n_frames=n, size=(480, 360), preset="ultrafast")
        cfg = compose_cfg("stage=extract_frames", "dataset=custom", f"dataset.video={clip}")
        subject = subject_dir(cfg)
        registered_stages()
        Path("/proc/self/clear_refs").write_text("5")
        base = _vm_kb("VmRSS")
        run_plan(cfg, subject)
        growth[n] = (_vm_kb("VmHWM") - base) / 1024
        assert read_json(subject.video_json)["n_frames"] == n
    print("peak RSS growth (MB) by clip length:", growth)
    # Holding the frames would cost 400 * 0.5 MB = 200 MB; streaming keeps the peak flat.
    assert growth[400] < growth[40] + 40, growth
