"""Stages detect, crop and matting on real frames, including broken and awkward inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from prep.errors import BadInputError
from prep.io.files import load_npz, read_image
from prep.resume import ChunkStore
from prep.stages import crop, detect, matting
from prep.vision.detect import box_centre, box_side
from tests.vision.perception_data import clip_frames, make_ctx, photo, write_subject

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def c03(clip_c03) -> list[np.ndarray]:
    return clip_frames(clip_c03, 48)


def _run(subject, stages=("detect", "crop", "matting"), *overrides, force=False, **sections):
    mods = {"detect": detect, "crop": crop, "matting": matting}
    return {s: mods[s].run(make_ctx(subject, *overrides, force=force, **sections)) for s in stages}


def test_black_frames_are_flagged_bridged_or_invalid(tmp_subject, c03):
    frames = list(c03)
    black = np.zeros_like(frames[0])
    for t in (10, 11, 12, *range(25, 41)):
        frames[t] = black
    write_subject(tmp_subject, frames)
    res = _run(tmp_subject)
    det = load_npz(tmp_subject.detections)
    assert (det["reason"][[10, 11, 12]] == "interpolated").all() and det["valid"][10:13].all()
    assert not det["valid"][25:41].any() and (det["reason"][25:41] == "no_face").all()
    assert det["valid"][:10].all() and det["valid"][41:].all()
    assert res["detect"].n_flagged == 19
    assert res["crop"].metrics["face_margin_min"] > 0.1  # the face stays well inside the crop
    ct = load_npz(tmp_subject.crop_npz)
    for k in ("orig_to_crop", "crop_to_orig", "box_xyxy", "image_size", "valid"):
        assert k in ct
    assert ct["orig_to_crop"].shape == (48, 3, 3) and int(ct["image_size"]) == 512
    np.testing.assert_array_equal(ct["valid"], det["valid"])
    assert len(os.listdir(tmp_subject.crop_dir)) == 48
    assert len(os.listdir(tmp_subject.alpha_dir)) == 48
    a_face = read_image(tmp_subject.alpha_path(5), "gray") / 255.0
    a_black = read_image(tmp_subject.alpha_path(30), "gray") / 255.0
    assert 0.2 < a_face.mean() < 0.8 and a_face[256, 256] > 0.95
    assert a_black.mean() < 0.05


def _two_faces(shared_data) -> list[np.ndarray]:
    """Subject (p02) on the left; a second person (p08) on the right grows past the subject's
    size in the last frames (the subject still dominates the clip)."""
    a = cv2.resize(photo(shared_data, "p02"), (300, 300), interpolation=cv2.INTER_AREA)
    b_full = photo(shared_data, "p08")
    frames = []
    for t in range(10):
        img = np.full((420, 860, 3), 120, np.uint8)
        img[60:360, 20 + 2 * t : 320 + 2 * t] = a
        s = 200 + 12 * t
        b = cv2.resize(b_full, (s * b_full.shape[1] // b_full.shape[0], s))[:, :s]
        img[:s, 860 - s :] = b[: min(s, 420)]
        frames.append(img)
    return frames


def test_two_faces_keep_the_subject(tmp_subject, shared_data):
    write_subject(tmp_subject, _two_faces(shared_data))
    _run(tmp_subject, ("detect", "crop"))
    det = load_npz(tmp_subject.detections)
    assert (det["n_faces"] >= 2).sum() >= 5  # the bystander is really detected
    raw = ChunkStore(tmp_subject.detect_dir / "chunks").merge()
    assert box_side(raw["box"][-1, :2]).max() > 1.05 * box_side(det["box_xyxy"][-1])  # larger
    assert det["valid"].all()
    assert (box_centre(det["box_xyxy"])[:, 0] < 330).all()
    ct = load_npz(tmp_subject.crop_npz)
    assert box_centre(ct["box_xyxy"])[0, 0] < 330


def test_face_cut_by_the_border(tmp_subject, shared_data):
    img = cv2.resize(photo(shared_data, "p02"), (512, 512), interpolation=cv2.INTER_AREA)
    frame = np.full_like(img, 50)
    frame[:, :320] = img[:, 192:]  # the left ~third of the face is outside the frame
    write_subject(tmp_subject, [frame] * 6)
    res = _run(tmp_subject, ("detect", "crop"), crop={"pad": "constant"})
    assert load_npz(tmp_subject.detections)["valid"].all()
    assert res["crop"].metrics["outside_frac"] == 1.0
    out = read_image(tmp_subject.crop_frame_path(0), "rgb")
    assert (out[:, :5] < 8).all()  # constant padding where the crop leaves the frame
    with pytest.raises(BadInputError, match="drop_outside"):
        _run(tmp_subject, ("crop",), crop={"drop_outside": True})


def test_grayscale_and_224_video(tmp_path, c03):
    from prep.subject import SubjectDir

    gray = [np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, 2) for f in c03[:12]]
    small = [cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA) for f in c03[:12]]
    boxes = {}
    for name, frames in (("gray", gray), ("small", small)):
        subject = write_subject(SubjectDir(tmp_path / name), frames)
        _run(subject)
        det = load_npz(subject.detections)
        assert det["valid"].all() and (det["reason"] == "ok").all(), name
        boxes[name] = load_npz(subject.crop_npz)["box_xyxy"]
        assert read_image(subject.crop_frame_path(0), "rgb").shape == (512, 512, 3)
        assert read_image(subject.alpha_path(0), "gray")[300, 256] > 200, name
    np.testing.assert_allclose(boxes["small"][0] * 512 / 224, boxes["gray"][0], atol=25)


def test_4k_frame(tmp_subject, shared_data):
    img = photo(shared_data, "p08")  # 2444 x 1718
    big = np.full((2160, 3840, 3), 80, np.uint8)
    big[200 : 200 + img.shape[0], 1200 : 1200 + img.shape[1]] = img
    write_subject(tmp_subject, [big, big])
    _run(tmp_subject, ("detect", "crop"), crop={"shift_y": 0.0})
    ct = load_npz(tmp_subject.crop_npz)
    det = load_npz(tmp_subject.detections)
    c = box_centre(det["box_xyxy"][0])
    uv = ct["orig_to_crop"][0] @ [c[0], c[1], 1.0]
    np.testing.assert_allclose(uv[:2], [255.5, 255.5], atol=0.5)  # face centred in the crop
    assert read_image(tmp_subject.crop_frame_path(1), "rgb").shape == (512, 512, 3)
    # OTAvatar order on the 4K frame (matted at reduced size, then cropped) agrees with
    # matting the crop.
    _run(tmp_subject, ("matting",), crop={"shift_y": 0.0})
    a = read_image(tmp_subject.alpha_path(1), "gray") > 127
    _run(tmp_subject, ("matting",), crop={"shift_y": 0.0, "matting_first": True})
    b = read_image(tmp_subject.alpha_path(1), "gray") > 127
    assert a[256, 256] and (a & b).sum() / (a | b).sum() > 0.9


def test_crop_resumes_and_redoes_outputs_when_settings_change(tmp_subject, c03):
    write_subject(tmp_subject, c03[:8])
    _run(tmp_subject, ("detect", "crop"))
    for i in (2, 5):
        tmp_subject.crop_frame_path(i).unlink()
    (tmp_subject.crop_dir / ".tmp-killed.jpg").write_bytes(b"half a jpeg")
    keep = tmp_subject.crop_frame_path(0).stat().st_mtime_ns
    assert _run(tmp_subject, ("crop",))["crop"].n_skipped == 6
    assert tmp_subject.crop_frame_path(0).stat().st_mtime_ns == keep
    assert sorted(os.listdir(tmp_subject.crop_dir)) == [f"{i:06d}.jpg" for i in range(8)]
    assert _run(tmp_subject, ("crop",), crop={"scale": 2.0})["crop"].n_skipped == 0


def test_matting_first_matches_crop_first(tmp_subject, c03):
    write_subject(tmp_subject, c03[:4])
    _run(tmp_subject)
    a = read_image(tmp_subject.alpha_path(3), "gray") > 127
    _run(tmp_subject, ("crop", "matting"), crop={"matting_first": True})
    b = read_image(tmp_subject.alpha_path(3), "gray") > 127
    assert (a & b).sum() / (a | b).sum() > 0.95


def _launch(video, work_dir, max_frames: int) -> list[str]:
    """`python launch.py` on `video` (custom dataset, no logger), its first `max_frames` frames."""
    return [
        sys.executable,
        "launch.py",
        "dataset=custom",
        f"dataset.video={video}",
        "logger=none",
        f"work_dir={work_dir}",
        f"extract_frames.max_frames={max_frames}",
    ]


@pytest.mark.slow
def test_launch_end_to_end_and_missing_matting_weights(tmp_path, clip_c01):
    base = _launch(clip_c01, tmp_path, 12)
    env = {**os.environ, "AVATAR_PREP_ASSETS": str(tmp_path / "assets")}
    ok = subprocess.run(
        [*base, "stage=matting"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    subject = tmp_path / "custom" / clip_c01.stem
    assert len(os.listdir(subject / "matting" / "alpha")) == 12
    bad = subprocess.run(
        [*base, "stage=matting", "matting=rvm"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    lines = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert (
        len(lines) == 1 and "rvm_mobilenetv3" in lines[0] and "assets.rvm_mobilenetv3" in lines[0]
    )


def test_matting_resume_rewarms_temporal_state(tmp_subject, c03):
    write_subject(tmp_subject, c03[:16])
    _run(tmp_subject)
    before = [read_image(tmp_subject.alpha_path(i), "gray").astype(int) for i in (9, 10)]
    for i in (9, 10):
        tmp_subject.alpha_path(i).unlink()
    res = _run(tmp_subject, ("matting",))["matting"]
    assert res.n_skipped == 14
    for i, old in zip((9, 10), before, strict=True):
        new = read_image(tmp_subject.alpha_path(i), "gray").astype(int)
        assert np.abs(new - old).max() <= 2  # same as an uninterrupted run
    # Changed settings never mix with old outputs: everything is redone.
    assert _run(tmp_subject, ("matting",), matting={"temporal": 0.0})["matting"].n_skipped == 0


def test_detect_resumes_by_chunk(tmp_subject, c03):
    write_subject(tmp_subject, c03[:12])
    first = _run(tmp_subject, ("detect",), detect={"chunk": 4})["detect"]
    assert first.n_skipped == 0
    ref = load_npz(tmp_subject.detections)
    chunks = sorted((tmp_subject.detect_dir / "chunks").glob("*.npz"))
    assert len(chunks) == 3
    chunks[1].unlink()  # as if killed while detecting frames 4-7
    again = _run(tmp_subject, ("detect",), detect={"chunk": 4})["detect"]
    assert again.n_skipped == 8
    np.testing.assert_allclose(load_npz(tmp_subject.detections)["box_xyxy"], ref["box_xyxy"])
    # Another detector setting recomputes every chunk.
    assert (
        _run(tmp_subject, ("detect",), "detect.backend.model=full", detect={"chunk": 4})[
            "detect"
        ].n_skipped
        == 0
    )


def test_reduced_jpeg_decode_matches_full_decode(tmp_path, c03):
    from prep.subject import SubjectDir

    hd = [cv2.resize(f, (1080, 1080))[:, :] for f in c03[:3]]
    hd = [np.pad(f, ((0, 0), (420, 420), (0, 0)), mode="edge") for f in hd]  # 1920x1080
    boxes = {}
    for max_side in (960, 1920):  # 1/2-size DCT decode vs full decode
        subject = write_subject(SubjectDir(tmp_path / str(max_side)), hd)
        _run(subject, ("detect",), detect={"max_side": max_side})
        boxes[max_side] = load_npz(subject.detections)["box_xyxy"]
    side = box_side(boxes[1920])
    assert (np.abs(boxes[960] - boxes[1920]).max(axis=1) < 0.03 * side).all()


@pytest.mark.slow
def test_matting_resumes_after_a_kill(tmp_path, clip_c01):
    import json

    from tests.stages.kill import kill_when

    cmd = [*_launch(clip_c01, tmp_path, 80), "stage=matting"]
    alpha = tmp_path / "custom" / clip_c01.stem / "matting" / "alpha"

    def ten_frames() -> bool:  # finished frames only, not temp files
        names = os.listdir(alpha) if alpha.is_dir() else []
        return sum(not n.startswith(".tmp-") for n in names) >= 10

    kill_when(cmd, ten_frames)
    done_before = len([p for p in os.listdir(alpha) if not p.startswith(".tmp-")])
    assert 10 <= done_before < 80
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    man = json.loads((alpha.parent.parent / ".manifests" / "matting.json").read_text())
    assert man["n_frames"] == 80 and man["n_skipped"] == done_before
    assert sorted(os.listdir(alpha)) == [f"{i:06d}.png" for i in range(80)]
