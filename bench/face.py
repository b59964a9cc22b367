"""Benchmark: landmarks + iris + mesh parsing speed, and landmark jitter with/without the filter.

Runs on the real head-turn clip (../shared/data/clips/c01_wojtek_headturn_512.mp4, 512x512,
400 frames; the face fills the frame like a crop does), frames decoded once to a temp folder:

- mediapipe:  the landmarks backend (spawned worker: start-up and per-frame time);
- dlib:       the dlib backend on the same frames (HOG detector + shape predictor);
- iris:       iris centres and validity from the dense meshes;
- parsing:    mesh parsing per frame (labels only; the matte is replaced by an all-ones one);
- jitter:     nose-bridge jitter (px, after removing head motion, `prep.vision.landmarks.metrics`)
              on the stillest 50-frame window, raw vs One-Euro filtered, and on the fastest
              25-frame window the filter's lag (frames) and mean deviation from raw (px).

Prints a table and writes bench/results/face.json. Usage::

    python bench/face.py               # all 400 frames (about a minute on 2 busy cores)
    python bench/face.py --frames 100  # quicker; jitter windows still fit
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "face.json"
CLIP = REPO.parent / "shared" / "data" / "clips" / "c01_wojtek_headturn_512.mp4"
sys.path.insert(0, str(REPO))


def decode(clip: Path, folder: Path, n: int) -> list[Path]:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    paths = []
    while len(paths) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        p = folder / f"{len(paths):06d}.png"
        cv2.imwrite(str(p), bgr)
        paths.append(p)
    return paths


def landmark_timing(paths: list[Path], backend: str):
    """(result, start-up seconds, ms per frame) of one landmark backend."""
    from prep.config.backends import SCHEMAS
    from prep.config.face import LandmarksConfig
    from prep.vision.landmarks import make_backend

    t0 = time.perf_counter()
    with make_backend(LandmarksConfig(backend=SCHEMAS[("landmarks", backend)]())) as be:
        be.detect(paths[:1])  # start the worker / load models
        t1 = time.perf_counter()
        res = be.detect(paths)
        t2 = time.perf_counter()
    return res, t1 - t0, 1000.0 * (t2 - t1) / len(paths)


def jitter_section(res, fps: float = 25.0) -> dict[str, float]:
    """Nose-bridge jitter raw vs filtered, and the filter's lag on the fastest motion."""
    from prep.config.face import LandmarksConfig
    from prep.vision.landmarks.filter import inter_ocular_px, one_euro
    from prep.vision.landmarks.metrics import bridge_midpoint_rms_px, lag_frames, window_by_speed

    c = LandmarksConfig()
    raw, valid = res.points_px, res.valid
    filt = one_euro(raw, valid, fps, c.min_cutoff_hz, c.beta, c.d_cutoff_hz, inter_ocular_px(raw))
    still = window_by_speed(raw, valid, 50, fastest=False)
    fast = window_by_speed(raw, valid, 25, fastest=True)
    iod = float(np.nanmedian(inter_ocular_px(raw)))
    return {
        "still_window": [still.start, still.stop],
        "fast_window": [fast.start, fast.stop],
        "iod_px": iod,
        "jitter_raw_px": bridge_midpoint_rms_px(raw[still], valid[still]),
        "jitter_filtered_px": bridge_midpoint_rms_px(filt[still], valid[still]),
        "fast_jitter_raw_px": bridge_midpoint_rms_px(raw[fast], valid[fast]),
        "fast_jitter_filtered_px": bridge_midpoint_rms_px(filt[fast], valid[fast]),
        "fast_lag_frames": lag_frames(raw[fast], filt[fast]),
        "fast_dev_px": float(np.nanmean(np.linalg.norm(raw[fast] - filt[fast], axis=-1))),
    }


def iris_parsing_timing(paths: list[Path], res) -> dict[str, float]:
    import cv2

    from prep.vision.iris import iris_from_mesh
    from prep.vision.parsing.mesh import mesh_parsing

    t0 = time.perf_counter()
    iris = iris_from_mesh(res.dense_px, res.valid)
    t_iris = 1000.0 * (time.perf_counter() - t0) / len(paths)
    k = min(len(paths), 40)
    t0 = time.perf_counter()
    for i in range(k):
        rgb = cv2.imread(str(paths[i]))[:, :, ::-1]
        mesh_parsing(res.dense_px[i], np.full(rgb.shape[:2], 255, np.uint8), rgb)
    t_parse = 1000.0 * (time.perf_counter() - t0) / k
    return {
        "iris_ms_per_frame": t_iris,
        "iris_both_valid_frac": float(iris.valid.all(1).mean()),
        "parsing_mesh_ms_per_frame": t_parse,
    }


def run_face_bench(n_frames: int = 400, clip: Path = CLIP) -> dict:
    """All face measurements; returns the result dict (also used by bench/perception.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = decode(clip, Path(tmp), n_frames)
        mp_res, mp_start, mp_ms = landmark_timing(paths, "mediapipe")
        dl_res, dl_start, dl_ms = landmark_timing(paths, "dlib")
        out = {
            "clip": clip.name,
            "frames": len(paths),
            "machine": platform.machine(),
            "mediapipe_start_s": mp_start,
            "mediapipe_ms_per_frame": mp_ms,
            "mediapipe_valid_frac": float(mp_res.valid.mean()),
            "dlib_start_s": dl_start,
            "dlib_ms_per_frame": dl_ms,
            "dlib_valid_frac": float(dl_res.valid.mean()),
        }
        out.update(iris_parsing_timing(paths, mp_res))
        out["jitter_mediapipe"] = jitter_section(mp_res)
        out["jitter_dlib"] = jitter_section(dl_res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    args = ap.parse_args()
    res = run_face_bench(args.frames)
    from prep.io.files import write_json  # strict JSON: an undefined number is null, not NaN

    write_json(RESULTS, res)
    flat = {}
    for k, v in res.items():
        flat.update({f"{k}.{kk}": vv for kk, vv in v.items()} if isinstance(v, dict) else {k: v})
    for k, v in flat.items():
        print(f"{k:42s} {v:.3f}" if isinstance(v, float) else f"{k:42s} {v}")


if __name__ == "__main__":
    main()
