"""Benchmark: stages detect + crop + matting on the shared clips, against MediaPipe face mesh.

For each real clip (../shared/data/clips, 512x512) the frames are written once to a temp subject
(as extract_frames would), then the real stage functions run on them, each timed:

- detect:   MediaPipe face detection (or dlib) + subject tracking -> detections.npz
- crop:     static 512 crop, frames decoded, warped and JPEG-encoded -> crop/frames
- matting:  selfie segmentation + guided filter + temporal smoothing -> matting/alpha
- reference: MediaPipe face mesh alone (refine_landmarks=True, video mode) on the same frames,
             decoded in memory; throughput targets are stated as a ratio to it.

Quality columns: the fraction of frames with a valid detection (target: every frame), crop jitter
(crop pixels) and matte flicker (mean |alpha_t - alpha_t-1|). Wall and CPU seconds are both
reported because the bench machine is shared. Prints a table and writes
bench/results/perception.json. (The landmarks/iris numbers live in bench/face.py.)

Usage::

    python bench/perception.py                 # both clips, all frames
    python bench/perception.py --frames 100    # quicker
    python bench/perception.py --detect dlib   # the dlib HOG backend
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "perception.json"
CLIPS = REPO.parent / "shared" / "data" / "clips"
sys.path.insert(0, str(REPO))


def timed(fn, *args):
    """(result, wall seconds, cpu seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def face_mesh_reference(frames: list[np.ndarray]) -> tuple[float, float]:
    """Wall and CPU seconds of MediaPipe face mesh alone on in-memory frames."""
    from mediapipe.python.solutions import face_mesh

    with face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=True, max_num_faces=1) as fm:
        fm.process(frames[0])  # graph start-up is not per-frame cost
        _, wall, cpu = timed(lambda: [fm.process(f) for f in frames])
    return wall, cpu


def bench_clip(clip: Path, n: int, detect_backend: str) -> dict:
    from prep.io.files import load_npz
    from prep.stages import crop, detect, matting
    from prep.subject import SubjectDir
    from tests.vision.perception_data import clip_frames, make_ctx, write_subject

    frames = clip_frames(clip, n)
    with tempfile.TemporaryDirectory() as tmp:
        subject = write_subject(SubjectDir(Path(tmp) / clip.stem), frames)
        ctx = make_ctx(subject, f"detect={detect_backend}")
        r_det, w_det, c_det = timed(detect.run, ctx)
        r_crop, w_crop, c_crop = timed(crop.run, ctx)
        r_mat, w_mat, c_mat = timed(matting.run, ctx)
        det = load_npz(subject.detections)
    w_ref, c_ref = face_mesh_reference(frames)
    T = len(frames)
    w_all, c_all = w_det + w_crop + w_mat, c_det + c_crop + c_mat
    return {
        "clip": clip.name,
        "frames": T,
        "detect_backend": detect_backend,
        "detected_frac": float((det["reason"] == "ok").mean()),
        "valid_frac": float(det["valid"].mean()),
        "crop_jitter_px": r_crop.metrics["box_accel_px"],  # key kept: bench/results history
        "matte_flicker": r_mat.metrics["flicker"],
        "matte_coverage": r_mat.metrics["coverage"],
        "fps_wall": {
            "detect": T / w_det,
            "crop": T / w_crop,
            "matting": T / w_mat,
            "detect+crop+matting": T / w_all,
            "face_mesh_alone": T / w_ref,
        },
        "ms_cpu_per_frame": {
            "detect": 1e3 * c_det / T,
            "crop": 1e3 * c_crop / T,
            "matting": 1e3 * c_mat / T,
            "detect+crop+matting": 1e3 * c_all / T,
            "face_mesh_alone": 1e3 * c_ref / T,
        },
        "ratio_to_face_mesh_wall": w_ref / w_all,
        "ratio_to_face_mesh_cpu": c_ref / c_all,
    }


def chain_throughput(row: dict, face: dict) -> dict:
    """Frames/s of the whole default chain on one clip: this bench's detect+crop+matting wall
    time plus bench/face.py's per-frame landmarks (mediapipe) and iris times on the same clip."""
    ms = 1e3 / row["fps_wall"]["detect+crop+matting"]
    ms += face["mediapipe_ms_per_frame"] + face["iris_ms_per_frame"]
    fps = 1e3 / ms
    return {
        "clip": row["clip"],
        "fps_wall": fps,
        "ratio_to_face_mesh": fps / row["fps_wall"]["face_mesh_alone"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000, help="frames per clip (default: all)")
    ap.add_argument("--detect", default="mediapipe", choices=["mediapipe", "dlib"])
    ap.add_argument("--face", action="store_true", help="also run bench/face.py")
    args = ap.parse_args()
    import logging
    import os

    os.environ.setdefault("AVATAR_PREP_PROGRESS", "0")
    logging.basicConfig(level=logging.WARNING)
    clips = sorted(CLIPS.glob("*.mp4"))
    if not clips:
        sys.exit(f"no clips under {CLIPS}")
    rows = [bench_clip(c, args.frames, args.detect) for c in clips]
    print(
        f"{'clip':34s} {'T':>4s} {'valid':>6s} {'det':>6s} {'crop':>6s} {'matte':>6s} "
        f"{'all':>6s} {'mesh':>6s} {'ratio':>6s}   (fps, wall; ratio = all / mesh)"
    )
    for r in rows:
        f = r["fps_wall"]
        print(
            f"{r['clip'][:34]:34s} {r['frames']:4d} {r['valid_frac']:6.3f} {f['detect']:6.1f} "
            f"{f['crop']:6.1f} {f['matting']:6.1f} {f['detect+crop+matting']:6.1f} "
            f"{f['face_mesh_alone']:6.1f} {r['ratio_to_face_mesh_wall']:6.2f}"
        )
        c = r["ms_cpu_per_frame"]
        print(
            f"{'  cpu ms/frame':34s} {'':4s} {'':6s} {c['detect']:6.1f} {c['crop']:6.1f} "
            f"{c['matting']:6.1f} {c['detect+crop+matting']:6.1f} {c['face_mesh_alone']:6.1f} "
            f"{r['ratio_to_face_mesh_cpu']:6.2f}   jitter {r['crop_jitter_px']:.3f} px, "
            f"flicker {r['matte_flicker']:.4f}"
        )
    out = {"machine": platform.platform(), "cpus": os.cpu_count(), "clips": rows}
    if args.face:  # landmarks + iris timing and landmark jitter: measured by bench/face.py
        from bench.face import run_face_bench

        out["face"] = run_face_bench(min(args.frames, 400))
        print(json.dumps(out["face"], indent=1))
        out["chain"] = chain_throughput(rows[0], out["face"])
        print(
            "detect+crop+matting+landmarks+iris on {clip}: {fps_wall:.1f} fps "
            "({ratio_to_face_mesh:.2f} x face mesh alone; target >= 15 fps)".format(**out["chain"])
        )
    from prep.io.files import write_json  # strict JSON: an undefined number is null, not NaN

    write_json(RESULTS, out)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
