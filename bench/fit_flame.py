"""Benchmark: our FLAME tracker against the IMAvatar reference fit, on synthetic data.

Usage::

    python bench/fit_flame.py      # 4 held-out seeds: both on 200 frames; ours on 2,000; memory
    python bench/fit_flame.py --seeds 0 --frames 300 --ref-frames 60 --mem-frames 0  # quick look

What it does:
1. Writes a synthetic FLAME model in the FLAME file format (chumpy-referencing pickle on the
   real topology when ../shared/data/flame_public is present, else the tiny model) and loads it
   through our loader.
2. Draws a sequence with head motion on a talking head's time scales, talking expressions, jaw,
   gaze, blinks (the model has eyelid blendshapes), per-frame translation;
   projects 68 landmarks + 2 irises with a known camera; adds detector-like noise (Gaussian,
   occasional outliers) and missing frames.
3. Fits it with our default tracker (Gauss-Newton, landmark vertices only) and with the
   IMAvatar reference implemented below (full-mesh forward, Adam lr 1e-2, 1000 iterations over
   all frames at once, IMAvatar's loss and weights), both from the same initial values, on the
   same frames, with the same thread count, in the same process.
4. Reports landmark RMSE (px, against the noisy observations and the clean truth), head pose
   error (deg), expression / shape coefficient error, wall times and their ratio, and the peak
   memory of our tracker on ``--mem-frames`` frames (a child process), into
   bench/results/fit_flame.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prep.config.flame import FlameConfig, TrackerConfig  # noqa: E402
from prep.models.rotations import axis_angle_to_matrix, rotation_angle_deg  # noqa: E402
from prep.track.flame_data import TrackingData  # noqa: E402
from prep.track.flame_fit import Camera, build_flame, fit_sequence, rigid_init  # noqa: E402
from prep.track.flame_params import project_flame_points  # noqa: E402
from tests.fixtures.synthetic_flame import write_full_assets, write_tiny_assets  # noqa: E402
from tests.fixtures.synthetic_sequence import make_sequence  # noqa: E402

FLAME_PUBLIC = REPO.parent / "shared" / "data" / "flame_public"


def corrupt(data: TrackingData, rng, outlier_rate: float, drop_rate: float) -> TrackingData:
    """Detector-like damage: outliers of 5-15 px on some points, randomly dropped frames."""
    pts = data.lmk_px.copy()
    out = rng.random(pts.shape[:2]) < outlier_rate
    pts[out] += rng.normal(0, 10, (out.sum(), 2))
    drop = rng.random(len(pts)) < drop_rate
    valid = data.valid & ~drop
    return TrackingData(
        data.frame_names,
        np.where(valid[:, None, None], pts, 0),
        data.lmk_w * valid[:, None],
        valid,
        data.iris_px,
        data.iris_w * valid[:, None],
        data.dense_px,
        data.dense_w,
        data.orig_to_crop,
        data.image_size,
        data.orig_hw,
    )


def imavatar_reference(
    flame,
    data: TrackingData,
    K: np.ndarray,
    init_transl: np.ndarray,
    iters: int = 1000,
    lr: float = 1e-2,
) -> dict[str, np.ndarray]:
    """IMAvatar's fit (preprocess/DECA/optimize.py) as its authors run it, with per-frame
    translation: full FLAME forward every iteration, Adam, mean Euclidean landmark distance in
    [-1, 1] coordinates, priors 1e-2, smoothness expression 0.1, pose 10, translation 5.
    A model with eyelid blendshapes gets per-frame eyelids treated like expression coefficients
    (IMAvatar's FLAME 2020 blinks through its expression space)."""
    T, dt = data.n_frames, flame.v_template.dtype
    shape = torch.zeros(flame.n_shape, dtype=dt, requires_grad=True)
    expr = torch.zeros(T, flame.n_expr + 2 * flame.has_eyelids, dtype=dt, requires_grad=True)
    ne = flame.n_expr
    pose = torch.zeros(T, 15, dtype=dt, requires_grad=True)
    transl = torch.as_tensor(init_transl, dtype=dt).clone().requires_grad_(True)
    obs = torch.as_tensor(np.concatenate([data.lmk_px, data.iris_px], 1), dtype=dt)
    w = torch.as_tensor(np.concatenate([data.lmk_w, data.iris_w], 1) > 0, dtype=dt)
    size = torch.as_tensor(data.image_size[::-1].copy(), dtype=dt)
    Kt = torch.as_tensor(K, dtype=dt)
    A = torch.as_tensor(data.orig_to_crop, dtype=dt)
    opt = torch.optim.Adam([shape, expr, pose, transl], lr=lr)

    def forward():
        lids = expr[:, ne:] if flame.has_eyelids else None
        return flame(
            shape, expr[:, :ne], pose[:, :3], pose[:, 3:6], pose[:, 6:9], pose[:, 9:],
            transl=transl, eyelids=lids,
        )  # fmt: skip

    for _ in range(iters):
        out = forward()
        lmk, _ = flame.landmarks_from_vertices(out.vertices, pose[:, :3], pose[:, 3:6])
        px = project_flame_points(lmk, Kt, A)
        d = torch.sqrt((((px - obs) / size * 2) ** 2).sum(-1) + 1e-12)
        loss = (d * w).sum() / w.sum()
        loss = loss + 1e-2 * (shape**2).mean() + 1e-2 * (expr**2).mean()
        loss = (
            loss
            + 0.1 * ((expr[1:] - expr[:-1]) ** 2).mean()
            + 10 * ((pose[1:] - pose[:-1]) ** 2).mean()
        )
        loss = loss + 5 * ((transl[1:] - transl[:-1]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = forward()
        lmk, _ = flame.landmarks_from_vertices(out.vertices, pose[:, :3], pose[:, 3:6])
        px = project_flame_points(lmk, Kt, A)
    p = pose.detach().double().numpy()
    return {
        "shape": shape.detach().double().numpy(),
        "expr": expr[:, :ne].detach().double().numpy(),
        "eyelids": expr[:, ne:].detach().double().numpy(),
        "global_pose": p[:, :3],
        "neck_pose": p[:, 3:6],
        "lmk_px": px.double().numpy(),
    }


def head_rot_err_deg(p: dict, gt: dict) -> np.ndarray:
    def R(x):
        g = torch.as_tensor(np.asarray(x["global_pose"], np.float64))
        n = torch.as_tensor(np.asarray(x["neck_pose"], np.float64))
        return axis_angle_to_matrix(g) @ axis_angle_to_matrix(n)

    return rotation_angle_deg(R(p), R(gt)).numpy()


def evaluate(p: dict, lmk_px: np.ndarray, seq, data: TrackingData, seconds: float) -> dict:
    v = data.valid
    rmse = np.sqrt(((lmk_px[:, :68] - data.lmk_px) ** 2).sum(-1).mean(1))
    clean = np.sqrt(((lmk_px[:, :68] - seq.clean_px[: len(v), :68]) ** 2).sum(-1).mean(1))
    gt = {k: (x[: len(v)] if x.ndim == 2 else x) for k, x in seq.gt.items()}
    pe = head_rot_err_deg(p, gt)
    return {
        "lmk_rmse_px": float(rmse[v].mean()),
        "lmk_rmse_vs_truth_px": float(clean.mean()),
        "pose_err_deg": float(pe.mean()),
        "pose_err_deg_missing_frames": float(pe[~v].mean()) if (~v).any() else None,
        "expr_mae": float(np.abs(np.asarray(p["expr"]) - gt["expr"]).mean()),
        "shape_mae": float(np.abs(np.asarray(p["shape"]) - gt["shape"]).mean()),
        "eyelid_mae": float(np.abs(np.asarray(p["eyelids"]) - gt["eyelids"]).mean())
        if "eyelids" in gt
        else None,
        "seconds": seconds,
    }


def run_ours(flame, data, seq, cfg) -> tuple[dict, dict]:
    c = (data.image_size[1] - 1) / 2
    t0 = time.perf_counter()
    out = fit_sequence(flame, data, Camera(seq.focal, seq.focal, c, c), cfg)
    sec = time.perf_counter() - t0
    return evaluate(out.params, out.lmk_px.astype(np.float64), seq, data, sec), out.summary()


def memory_child(args) -> dict:
    """Peak RSS of a child fitting `mem_frames` frames (1 iteration per phase)."""
    cmd = [
        sys.executable,
        __file__,
        "--mem-only",
        "--frames",
        str(args.mem_frames),
        "--threads",
        str(args.threads),
    ]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {"error": res.stderr[-2000:]}
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "frames": args.mem_frames,
        "peak_rss_gb": peak_kb / 2**20,
        "seconds_one_iteration_per_phase": time.perf_counter() - t0,
    }


def missing_run(frames: int) -> tuple[int, int]:
    """A run of frames without landmarks (a third into the sequence, 1% of it, at least 2)."""
    return frames // 3, frames // 3 + max(frames // 100, 2)


def setup(args, tmp: Path, seed: int):
    torch.set_num_threads(args.threads)
    if FLAME_PUBLIC.exists() and not args.tiny:
        assets, model = (
            write_full_assets(tmp, FLAME_PUBLIC, seed=seed, eyelids=True),
            "synthetic FLAME topology",
        )
    else:
        assets, model = write_tiny_assets(tmp, seed=seed, eyelids=True), "tiny synthetic model"
    flame = build_flame(assets, FlameConfig(n_shape=100, n_expr=50), dense=False)
    rng = np.random.default_rng(seed)
    gap = missing_run(args.frames)
    seq = make_sequence(flame, args.frames, seed=seed, noise_px=args.noise_px, missing=gap)
    data = corrupt(seq.data, rng, outlier_rate=0.01, drop_rate=0.01)
    return flame, seq, data, model


def compare_seed(args, seed: int, tmp: Path) -> dict:
    """Ours, ours with the true identity, and the reference on the first --ref-frames frames of
    the sequence drawn with `seed` (its own synthetic model too); ours on the whole sequence
    for the first seed only."""
    flame, seq, data, model = setup(args, tmp, seed)
    n_ref = min(args.ref_frames, args.frames)
    ref_data = data.subset(np.arange(n_ref))
    c = (data.image_size[1] - 1) / 2
    camera = Camera(seq.focal, seq.focal, c, c)
    ours, _ = run_ours(flame, ref_data, seq, TrackerConfig())
    # diagnostic: the same fit with the true identity fixed (separates shape/pose ambiguity)
    t0 = time.perf_counter()
    o = fit_sequence(
        flame, ref_data, camera, TrackerConfig(), fixed_shape=seq.gt["shape"].astype(np.float64)
    )
    true_shape = evaluate(
        o.params, o.lmk_px.astype(np.float64), seq, ref_data, time.perf_counter() - t0
    )
    K = np.array([[seq.focal, 0, c], [0, seq.focal, c], [0, 0, 1]])
    t0 = time.perf_counter()
    init = rigid_init(flame, ref_data, K)
    ref = imavatar_reference(flame, ref_data, K, init.transl, args.ref_iters)
    ref_eval = evaluate(ref, ref["lmk_px"], seq, ref_data, time.perf_counter() - t0)
    yaw = np.degrees(seq.gt["global_pose"][:n_ref, 1])
    out = {
        "model": model,
        "yaw_range_deg": [float(yaw.min()), float(yaw.max())],
        "ours": ours,
        "ours_true_shape_fixed": true_shape,
        "imavatar_reference": {**ref_eval, "iterations": args.ref_iters, "lr": 1e-2},
    }
    if seed == args.seeds[0] and args.frames > n_ref:
        full, _ = run_ours(flame, data, seq, TrackerConfig())
        out["ours_all_frames"] = {**full, "frames": args.frames,
                                  "frames_per_second": args.frames / full["seconds"]}  # fmt: skip
    return out


def summarise(per_seed: dict[str, dict]) -> dict:
    """Means over seeds, the wall-time ratio (sums) and whether each target is met."""

    def mean(who: str, key: str) -> float:
        return float(np.mean([r[who][key] for r in per_seed.values()]))

    ours = {k: mean("ours", k) for k in ("lmk_rmse_px", "pose_err_deg", "seconds")}
    ref = {k: mean("imavatar_reference", k) for k in ("lmk_rmse_px", "pose_err_deg", "seconds")}
    ratio = ours["seconds"] / ref["seconds"]
    return {
        "ours_mean": ours,
        "reference_mean": ref,
        "ours_true_shape_fixed_mean_pose_err_deg": mean("ours_true_shape_fixed", "pose_err_deg"),
        "wall_time_ratio_ours_over_reference": ratio,
        "targets": {
            "lmk_rmse_le_reference": ours["lmk_rmse_px"] <= ref["lmk_rmse_px"],
            "pose_err_le_reference": ours["pose_err_deg"] <= ref["pose_err_deg"],
            "time_le_1_20_of_reference": ratio <= 1 / 20,
            "seeds_where_ours_pose_le_reference": sum(
                r["ours"]["pose_err_deg"] <= r["imavatar_reference"]["pose_err_deg"]
                for r in per_seed.values()
            ),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=2000, help="sequence length for our tracker")
    ap.add_argument(
        "--ref-frames", type=int, default=200, help="frames both methods fit for the comparison"
    )
    ap.add_argument("--ref-iters", type=int, default=1000)
    ap.add_argument("--mem-frames", type=int, default=10000, help="0 = skip the memory run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--noise-px", type=float, default=1.0)
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[4, 5, 6, 7],
        help="one synthetic model + sequence each; targets are judged on the means (the "
        "tracker defaults were chosen on seeds 0-3 and 12-23; 4-11 and 24-27 are held out)",
    )  # fmt: skip
    ap.add_argument("--tiny", action="store_true", help="use the tiny model even with shared data")
    ap.add_argument("--mem-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fit_flame.json")
    args = ap.parse_args()
    if args.mem_only:
        with tempfile.TemporaryDirectory() as tmp:
            flame, seq, data, _ = setup(args, Path(tmp), args.seeds[0])
            cfg = TrackerConfig()
            for ph in cfg.phases:
                ph.iters = 1
            c = (data.image_size[1] - 1) / 2
            fit_sequence(flame, data, Camera(seq.focal, seq.focal, c, c), cfg)
        return
    per_seed = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            per_seed[str(seed)] = compare_seed(args, seed, Path(tmp))
        r = per_seed[str(seed)]
        print(
            f"seed {seed}: ours pose {r['ours']['pose_err_deg']:.2f} deg, "
            f"RMSE {r['ours']['lmk_rmse_px']:.2f} px, {r['ours']['seconds']:.1f} s | reference "
            f"{r['imavatar_reference']['pose_err_deg']:.2f} deg, "
            f"{r['imavatar_reference']['lmk_rmse_px']:.2f} px, "
            f"{r['imavatar_reference']['seconds']:.1f} s",
            flush=True,
        )
    result = {
        "frames": args.frames,
        "comparison_frames": min(args.ref_frames, args.frames),
        "seeds": args.seeds,
        "threads": args.threads,
        "noise": {
            "gaussian_px": args.noise_px,
            "outlier_rate": 0.01,
            "drop_rate": 0.01,
            "missing_run": list(missing_run(args.frames)),
        },
        **summarise(per_seed),
        "per_seed": per_seed,
        "memory": memory_child(args) if args.mem_frames > 0 else None,
        "machine": {"cpu_count": __import__("os").cpu_count(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_seed"}, indent=1))


if __name__ == "__main__":
    main()
