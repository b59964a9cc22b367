"""Benchmark: many subjects with the joblib launcher versus one subject alone.

N copies of a shared clip become N subjects of one multirun (``hydra/launcher=joblib``,
``n_jobs`` workers). For each N it measures the wall time of the whole sweep, the throughput in
frames per second over all subjects, the speed-up against N=1, and the peak resident memory of
every worker process (sampled from /proc while the sweep runs; VmHWM, the kernel's high-water
mark; with one job joblib runs it inside the main process). Each subject runs the
perception stages up to ``--stage`` on ``--frames`` frames. The 1-minute load average
before and after each sweep is recorded: on a shared machine it bounds the speed-up.

On a machine shared with other jobs, ``--repeat`` interleaves the N values and keeps each N's
fastest sweep (outside load only ever slows a run down).

Usage::

    python bench/scale.py                       # N = 1, 2, 4 on 60 frames of c01, 2 workers
    python bench/scale.py --n 1 2 --frames 30   # quicker on a shared machine

Writes bench/results/scale.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scale.json"
CLIP = REPO.parent / "shared" / "data" / "clips" / "c01_wojtek_headturn_512.mp4"


def _children() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    out[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _descendants(root: int) -> list[int]:
    parent = _children()
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _hwm_mb(pid: int) -> tuple[str, float] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return fields["Name"].strip(), int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


class PeakSampler(threading.Thread):
    """Samples the high-water RSS of every descendant of a process until stopped."""

    def __init__(self, pid: int, period_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.peaks: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in [self.pid, *_descendants(self.pid)]:
                got = _hwm_mb(pid)
                if got and got[1] > self.peaks.get(pid, ("", 0.0))[1]:
                    self.peaks[pid] = got
            self.stop.wait(self.period_s)


def run_sweep(n: int, args, tmp: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=tmp))  # fresh subjects for every repeat
    videos = []
    for k in range(n):
        v = tmp / f"clips{n}" / f"subj{k:02d}.mp4"
        v.parent.mkdir(parents=True, exist_ok=True)
        v.symlink_to(args.clip)
        videos.append(str(v))
    cmd = [
        sys.executable,
        str(REPO / "launch.py"),
        "-m",
        "dataset=custom",
        "dataset.video=" + ",".join(videos),
        f"stage={args.stage}",
        f"extract_frames.max_frames={args.frames}",
        "logger=none",
        f"work_dir={tmp / f'work{n}'}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={min(args.jobs, n)}",
        f"hydra.sweep.dir={tmp / f'sweep{n}'}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    env = {**os.environ, "AVATAR_PREP_PROGRESS": "0"}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = PeakSampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"sweep N={n} failed:\n{out[-3000:]}")
    summary = json.loads((tmp / f"sweep{n}" / "summary.json").read_text())
    n_ok = sum(r["ok"] for r in summary)
    launcher = sampler.peaks.get(proc.pid, ("", float("nan")))[1]
    workers = [
        mb
        for pid, (name, mb) in sampler.peaks.items()
        if pid != proc.pid and name.startswith("python")
    ]
    return {
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "n_subjects": n,
        "n_ok": n_ok,
        "n_jobs": min(args.jobs, n),
        "wall_s": round(wall, 2),
        "frames_per_s": round(n * args.frames / wall, 2),
        "launcher_peak_rss_mb": round(launcher, 1),
        "worker_peak_rss_mb": sorted(round(m, 1) for m in workers),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 4], help="subject counts")
    ap.add_argument("--frames", type=int, default=60, help="frames per subject")
    ap.add_argument("--jobs", type=int, default=2, help="joblib workers")
    ap.add_argument("--stage", default="landmarks", help="last stage each subject runs")
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the N values this many times, interleaved; keep each N's fastest",
    )
    args = ap.parse_args()
    if not args.clip.exists():
        raise SystemExit(f"clip not found: {args.clip} (pass --clip)")
    tmp = Path(tempfile.mkdtemp(prefix="avatar-prep-scale-"))
    try:
        runs = [run_sweep(n, args, tmp) for _ in range(args.repeat) for n in args.n]
        # other users' load only ever slows a run down: the fastest repeat is the best estimate
        rows = [
            min((r for r in runs if r["n_subjects"] == n), key=lambda r: r["wall_s"])
            for n in args.n
        ]
        for r in rows:
            r["wall_s_all_repeats"] = [
                x["wall_s"] for x in runs if x["n_subjects"] == r["n_subjects"]
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = next((r for r in rows if r["n_subjects"] == 1), rows[0])
    for r in rows:
        r["speedup_vs_n1"] = round(r["frames_per_s"] / base["frames_per_s"], 2)
    print(
        f"{'N':>3} {'jobs':>4} {'wall s':>7} {'frames/s':>9} {'speed-up':>8} {'main MB':>8}"
        "  other processes' peak RSS MB (loky workers, spawn pools)"
    )
    for r in rows:
        print(
            f"{r['n_subjects']:>3} {r['n_jobs']:>4} {r['wall_s']:>7} {r['frames_per_s']:>9} "
            f"{r['speedup_vs_n1']:>8} {r['launcher_peak_rss_mb']:>8}  "
            f"{r['worker_peak_rss_mb']}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "clip": args.clip.name,
                "frames_per_subject": args.frames,
                "stage": args.stage,
                "note": "machine shared with other engineers' jobs while measured",
                "runs": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
