"""A killed and resumed run gives the same bytes as an uninterrupted one, per per-frame stage.

The reference is an uninterrupted run of the face chain (detect .. iris) on the first 160 frames
of the head-turn clip c01. Landmarks are killed for real (SIGKILL once two of five chunks are
written); detect and parsing are cut at a chunk or frame boundary deterministically (their
outputs past it and their manifest removed, as a kill leaves them). npz files are compared array
by array (dtype, shape and bytes: numpy stamps the write time into the zip), the rest byte by
byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prep.io.files import load_npz
from prep.runner import run_plan
from prep.subject import SubjectDir, subject_dir
from tests.conftest import compose
from tests.stages.kill import kill_when

N = 160
CHUNK = 32  # landmarks chunk: five chunks, so a kill can land between two of them


def _overrides(video: Path, work: Path, stage: str) -> list[str]:
    return [
        "dataset=custom",
        f"dataset.video={video}",
        "logger=none",
        f"work_dir={work}",
        f"extract_frames.max_frames={N}",
        f"landmarks.chunk={CHUNK}",
        "landmarks.overlay=false",
        "parsing.overlay=false",
        "iris.overlay=false",
        f"stage={stage}",
    ]


def _run(video: Path, work: Path, stage: str) -> SubjectDir:
    cfg = compose(*_overrides(video, work, stage))
    subject = subject_dir(cfg)
    run_plan(cfg, subject)
    return subject


def assert_same_npz(a: Path, b: Path) -> None:
    za, zb = load_npz(a), load_npz(b)
    assert sorted(za) == sorted(zb), (a, b)
    for k in za:
        assert za[k].dtype == zb[k].dtype and za[k].shape == zb[k].shape, k
        assert za[k].tobytes() == zb[k].tobytes(), f"{a.name}:{k} differs"


def assert_same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for nm in names:
        assert (a / nm).read_bytes() == (b / nm).read_bytes(), f"{a / nm} differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, clip_c01) -> SubjectDir:
    return _run(clip_c01, tmp_path_factory.mktemp("uninterrupted"), "iris")


def _kill_landmarks(video: Path, work: Path, chunks: Path) -> int:
    """Start stage landmarks in a process, SIGKILL it after two chunks; chunks left behind."""
    cmd = [sys.executable, "launch.py", *_overrides(video, work, "landmarks")]
    kill_when(cmd, lambda: chunks.is_dir() and len(list(chunks.glob("0*.npz"))) >= 2, 120)
    return len(list(chunks.glob("0*.npz")))


@pytest.mark.slow
def test_landmarks_killed_and_resumed_give_the_same_bytes(tmp_path, clip_c01, reference):
    subject = _run(clip_c01, tmp_path, "crop")  # upstream done, as in a long run
    chunks = subject.landmarks_dir / "chunks"
    left = _kill_landmarks(clip_c01, tmp_path, chunks)
    assert 2 <= left < N // CHUNK and not subject.landmarks_npz.exists()
    _run(clip_c01, tmp_path, "iris")  # resumes landmarks, then matting, parsing, iris
    assert_same_npz(subject.landmarks_npz, reference.landmarks_npz)
    assert subject.keypoint_json.read_bytes() == reference.keypoint_json.read_bytes()
    # iris is computed from landmarks.npz alone: the same bytes follow
    assert_same_npz(subject.iris_npz, reference.iris_npz)
    assert subject.iris_json.read_bytes() == reference.iris_json.read_bytes()


@pytest.mark.slow
def test_detect_parsing_and_a_landmark_chunk_redone_give_the_same_bytes(
    tmp_path, clip_c01, reference
):
    subject = _run(clip_c01, tmp_path, "iris")
    # detect: its second chunk (frames 128-159) not written yet
    (chunk,) = (subject.detect_dir / "chunks").glob("000128-*.npz")
    chunk.unlink()
    subject.manifest_path("detect").unlink()
    # parsing: frames from 70 on not written yet, one half-written file
    for i in range(70, N):
        for p in (subject.parsing_path(i), subject.mask_path(i), subject.image_path(i)):
            p.unlink(missing_ok=True)
    (subject.mask_dir / ".tmp-000070.png").write_bytes(b"half a png")
    subject.manifest_path("parsing").unlink()
    # landmarks: a middle chunk lost (any chunk recomputed alone is identical)
    (subject.landmarks_dir / "chunks" / "000064-000096.npz").unlink()
    subject.manifest_path("landmarks").unlink()
    _run(clip_c01, tmp_path, "iris")
    assert_same_npz(subject.detections, reference.detections)
    for folder in ("parsing_dir", "mask_dir", "image_dir"):
        assert_same_files(getattr(subject, folder), getattr(reference, folder))
    assert_same_npz(subject.landmarks_npz, reference.landmarks_npz)


def test_bisenet_parsing_resumes_with_the_same_batches(tmp_path, clip_c03):
    """BiSeNet's logits depend on the batch a frame shares (~1e-7 on CPU): a resumed run must
    label the same fixed batches, so its labels are the bytes of an uninterrupted run."""
    import torch

    from prep.stages import crop, detect, matting, parsing
    from prep.stages.parsing import _batches
    from tests.vision.parsing.test_bisenet import _random_state
    from tests.vision.perception_data import clip_frames, make_ctx, write_subject

    assert _batches([5, 6, 9], 4, 10) == [[4, 5, 6, 7], [8, 9]]
    ckpt = tmp_path / "bisenet.pth"
    torch.save(_random_state(), ckpt)
    s = write_subject(SubjectDir(tmp_path / "s"), clip_frames(clip_c03, 10))
    for stage in (detect, crop, matting):
        stage.run(make_ctx(s))

    def run() -> None:
        ctx = make_ctx(
            s,
            "parsing=bisenet",
            "parsing.backend.size=128",
            "parsing.overlay=false",
            f"assets.bisenet={ckpt}",
        )
        parsing.run(ctx)

    run()
    ref = {p.name: p.read_bytes() for p in s.parsing_dir.iterdir()}
    for i in (5, 6, 9):  # killed inside the second batch, and one more
        s.parsing_path(i).unlink()
    run()
    assert {p.name: p.read_bytes() for p in s.parsing_dir.iterdir()} == ref
