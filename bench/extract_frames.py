"""Benchmark: stage extract_frames against a bare PyAV decode loop on the same 1080p H.264 clip.

One run generates a synthetic clip (default 10 minutes of 1920x1080 at 25 fps, x264 ultrafast),
then measures, each in a fresh subprocess so peak RSS is per measurement:

- decode:     ``for f in container.decode(...)`` with threading, pixels left in the decoder;
- decode_rgb: the same plus ``to_ndarray("rgb24")`` (the least any extractor must do);
- extract:    the real stage (decode + JPEG encode + atomic writes + meta) via the engine.

It prints a table and writes bench/results/extract_frames.json. Usage::

    python bench/extract_frames.py                 # the full 10-minute clip
    python bench/extract_frames.py --minutes 0.5   # quick check on a shared machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "extract_frames.json"
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would include the parent's peak
    inherited through fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_clip(path: Path, minutes: float, width: int, height: int, fps: int) -> int:
    """Write a video-like synthetic clip: a gradient scene, a moving textured "head", sensor
    noise; returns the frame count. (Pure noise would make JPEG and H.264 unrealistically slow.)
    """
    import av
    import cv2

    from prep.io.synthetic import pattern_frame

    n = int(round(minutes * 60 * fps))
    rng = np.random.default_rng(0)
    noise = [rng.normal(0, 6, (height, width, 3)).astype(np.int16) for _ in range(4)]
    scene = pattern_frame(0, width, height).astype(np.int16)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "20"}
        for i in range(n):
            img = scene + noise[i % 4]
            cx = int(width / 2 + width / 6 * np.sin(i / 40))
            cv2.ellipse(
                img, (cx, height // 2), (height // 5, height // 4), 0, 0, 360, (200, 150, 120), -1
            )
            cv2.circle(
                img, (cx - height // 12, height // 2 - height // 16), height // 40, (30, 30, 30), -1
            )
            cv2.circle(
                img, (cx + height // 12, height // 2 - height // 16), height // 40, (30, 30, 30), -1
            )
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), "rgb24")
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return n


def jpeg_encode_ms(clip: Path, quality: int = 95, n: int = 25) -> float:
    """Single-thread JPEG encode time of one decoded frame (the per-frame floor of extract)."""
    import av
    import cv2

    with av.open(str(clip)) as c:
        bgr = next(c.decode(video=0)).to_ndarray(format="bgr24")
    t0 = time.perf_counter()
    for _ in range(n):
        cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return (time.perf_counter() - t0) / n * 1000


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_decode(clip: Path, rgb: bool) -> dict:
    import av

    base_rss = peak_rss_mb()
    c0 = cpu_s()
    t0 = time.perf_counter()
    n = 0
    with av.open(str(clip)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        for frame in c.decode(vs):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    dt = time.perf_counter() - t0
    return {
        "frames": n,
        "seconds": dt,
        "fps": n / dt,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": base_rss,
        "cpu_ms_per_frame": (cpu_s() - c0) / n * 1000,
    }


def child_extract(clip: Path, work: Path, workers: int) -> dict:
    from hydra import compose, initialize_config_dir

    import prep.config
    from prep.config import to_typed
    from prep.pipeline import get_stage
    from prep.runner import run_plan
    from prep.subject import subject_dir

    prep.config.register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        dcfg = compose(
            "config",
            overrides=[
                "dataset=custom",
                f"dataset.video={clip}",
                "stage=extract_frames",
                "logger=none",
                f"work_dir={work}",
                f"extract_frames.workers={workers}",
            ],
        )
    cfg = to_typed(dcfg)
    subject = subject_dir(cfg)
    get_stage("extract_frames")  # import its module first (as the CLI does): not extraction
    base_rss = peak_rss_mb()
    c0 = cpu_s()
    t0 = time.perf_counter()
    outcome = run_plan(cfg, subject)
    dt = time.perf_counter() - t0
    n = outcome.results["extract_frames"].n_frames
    return {
        "frames": n,
        "seconds": dt,
        "fps": n / dt,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": base_rss,
        "cpu_ms_per_frame": (cpu_s() - c0) / n * 1000,
        "workers": workers,
    }


def run_child(*args: str) -> dict:
    env = {**os.environ, "AVATAR_PREP_PROGRESS": "0"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="clip length (default 10)")
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument(
        "--workers", type=int, default=2, help="extract_frames.workers (encoder threads)"
    )
    ap.add_argument("--clip", type=Path, help="reuse this clip instead of generating one")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, clip = args.child[0], Path(args.child[1])
        if kind == "extract":
            res = child_extract(clip, Path(args.child[2]), int(args.child[3]))
        else:
            res = child_decode(clip, rgb=kind == "decode_rgb")
        print(json.dumps(res))
        return

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        tmp = Path(tmp)
        clip = args.clip
        gen_s = 0.0
        if clip is None:
            clip = tmp / "synthetic_1080p.mp4"
            t0 = time.perf_counter()
            n = make_clip(clip, args.minutes, args.width, args.height, args.fps)
            gen_s = time.perf_counter() - t0
            print(f"generated {n} frames ({args.minutes} min) in {gen_s:.1f} s: {clip}")
        enc_ms = jpeg_encode_ms(clip)
        rows = {
            "decode": run_child("decode", str(clip)),
            "decode_rgb": run_child("decode_rgb", str(clip)),
            "extract": run_child("extract", str(clip), str(tmp / "work"), str(args.workers)),
        }
    report(args, rows, gen_s, enc_ms)


def report(args, rows: dict, gen_s: float, enc_ms: float) -> None:
    ratio = rows["extract"]["fps"] / rows["decode"]["fps"]
    ratio_rgb = rows["extract"]["fps"] / rows["decode_rgb"]["fps"]
    head = ("measurement", "frames", "seconds", "frames/s", "CPU ms/frame", "peak RSS MB")
    print("\n{:<12} {:>7} {:>8} {:>9} {:>13} {:>12}".format(*head))
    for name, r in rows.items():
        print(
            f"{name:<12} {r['frames']:>7} {r['seconds']:>8.1f} {r['fps']:>9.1f} "
            f"{r['cpu_ms_per_frame']:>13.1f} {r['peak_rss_mb']:>12.0f}"
        )
    print(
        f"\nextract / bare decode = {ratio:.2f}  (aim >= 0.8); "
        f"extract / decode+rgb = {ratio_rgb:.2f}"
    )
    print(
        f"extract peak RSS {rows['extract']['peak_rss_mb']:.0f} MB (aim < 500), of which "
        f"{rows['extract']['rss_before_mb']:.0f} MB already after importing the stage module; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"one frame's JPEG (q95) takes {enc_ms:.1f} ms on one thread: {args.workers} encoder "
        f"threads cap extract at ~{1000 * args.workers / enc_ms:.0f} frames/s"
    )
    result = {
        "clip": {
            "minutes": args.minutes,
            "width": args.width,
            "height": args.height,
            "fps": args.fps,
            "codec": "h264 (x264 ultrafast, crf 20)",
            "generate_s": gen_s,
        },
        "results": rows,
        "ratio_extract_vs_decode": ratio,
        "ratio_extract_vs_decode_rgb": ratio_rgb,
        "jpeg_encode_ms_1thread": enc_ms,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from prep.io.files import write_json  # strict JSON: an undefined number is null, not NaN

    write_json(RESULTS, result)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
