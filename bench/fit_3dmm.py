"""Benchmark: BFM coarse and fine trackers on a synthetic sequence with known parameters.

The model is the synthetic BFM-format face of tests/fixtures/synthetic_bfm.py (3,600 vertices;
the real BFM is licence-gated, and the trackers only evaluate the 68 landmark vertices plus
`n_photo_vertices`, so the vertex count barely changes the cost). A 100-frame cycle of smooth
head motion (yaw +-26 deg, pitch +-9, roll +-6, expressions) with known AD-NeRF parameters is
rendered at 256x256 by prep.render and written as JPEG; the clip is that cycle repeated to
`--frames` frames (pose is periodic, so the repeat is seamless). Landmarks get Gaussian noise.

Measured:
- coarse: fit_3dmm_coarse's landmark backend (alignment + per-frame fit): seconds per 1,000
  frames, landmark RMSE (aligned px), rotation error vs truth (deg);
- fine: fit_3dmm_fine's tracker with the default config (focal search 600..1400 at 512 scaled
  to the fit size, landmark phase, one photometric epoch streaming the JPEGs): seconds per
  1,000 frames with and without the photometric phase, focal found vs true, rotation error (deg),
  translation error, expression RMSE and correlation, landmark RMSE (px at 256).

Usage::

    python bench/fit_3dmm.py               # 1000 frames (about 5 minutes on 2 busy cores)
    python bench/fit_3dmm.py --no-compare  # without the landmarks-only fine run
    python bench/fit_3dmm.py --frames 300  # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "fit_3dmm.json"
sys.path.insert(0, str(REPO))


def make_clip(model, folder: Path, n: int, size: int, focal: float, noise_px: float):
    from prep.io.files import write_image
    from tests.fixtures.synthetic_bfm import adnerf_sequence
    from tests.stages.bfm_subject import render_frames

    cycle = adnerf_sequence(model, 100, focal, size, seed=7)
    gamma = np.zeros((100, 27), np.float32)  # ambient plus a light from the upper left
    gamma[:, [1, 10, 19]], gamma[:, [3, 12, 21]] = -0.2, 0.25
    frames = render_frames(model, cycle, gamma)
    for i, img in enumerate(frames):
        write_image(folder / f"{i:06d}.jpg", img)
    reps = int(np.ceil(n / 100))
    seq = {
        k: np.concatenate([v] * reps)[:n] if isinstance(v, np.ndarray) and len(v) == 100 else v
        for k, v in cycle.items()
    }
    rng = np.random.default_rng(0)
    seq["lmk_noisy"] = seq["lmk_px"] + rng.normal(0, noise_px, seq["lmk_px"].shape)
    return seq


def rot_err_deg(euler_fit, euler_true, deep3d: bool = False) -> np.ndarray:
    import torch

    from prep.models.bfm import adnerf_rotation, deep3d_rotation
    from prep.models.rotations import rotation_angle_deg

    fit = torch.tensor(euler_fit, dtype=torch.float64)
    r_fit = deep3d_rotation(fit) if deep3d else adnerf_rotation(fit)
    return rotation_angle_deg(r_fit, adnerf_rotation(torch.tensor(euler_true))).numpy()


def bench_coarse(model, seq, size: int) -> dict:
    from prep.config.bfm import CoarseConfig, LandmarksCoarseConfig
    from prep.track.bfm_align import aligned_from_source, apply_affine, five_points, pos_align
    from prep.track.bfm_coarse import fit_landmarks

    n = len(seq["euler"])
    t0 = time.perf_counter()
    lm3d = five_points(model.mean_shape[model.keypoints].numpy().astype(np.float64))
    tp = pos_align(seq["lmk_noisy"], (size, size), lm3d)
    fit = fit_landmarks(
        model,
        apply_affine(aligned_from_source(tp), seq["lmk_noisy"]),
        np.ones((n, 68)),
        CoarseConfig(),
        LandmarksCoarseConfig(),
    )
    dt = time.perf_counter() - t0
    err = rot_err_deg(fit.angles, seq["euler"], deep3d=True)
    return {
        "seconds": round(dt, 2),
        "sec_per_1000_frames": round(dt / n * 1000, 2),
        "lmk_rmse_aligned_px": round(float(np.median(fit.lmk_rmse_px)), 3),
        "rot_err_deg_mean": round(float(err.mean()), 2),
        "rot_err_deg_p95": round(float(np.percentile(err, 95)), 2),
    }


def _exp_landmark_err(model, exp_fit: np.ndarray, exp_true: np.ndarray) -> float:
    """Relative error of the expression's landmark displacement in x, y (the observable part).

    Coefficients themselves are not identifiable from 68 points when the basis is rank-deficient
    there (the synthetic one keeps ~15 directions); their effect on the landmarks is.
    """
    # x, y of the 68 points (depth displacements barely show in the image)
    E = model.exp_base[model.keypoints][:, :2].reshape(-1, model.n_exp).numpy().astype(np.float64)
    d_fit, d_true = exp_fit @ E.T, exp_true @ E.T
    return float(np.linalg.norm(d_fit - d_true) / np.linalg.norm(d_true))


def bench_fine(model, seq, folder: Path, size: int, photo: bool):
    from prep.config.bfm import FineConfig
    from prep.io.files import read_image
    from prep.track.bfm_fine import FrameImages, fit_video

    cfg = FineConfig()
    scale = size / 512  # config focals are given for a 512 crop in this bench
    s = dataclasses.replace(cfg, size=size, photo_epochs=cfg.photo_epochs if photo else 0)
    n = len(seq["euler"])
    images = FrameImages(np.arange(n), lambda i: read_image(folder / f"{i % 100:06d}.jpg"), size)
    t0 = time.perf_counter()
    res = fit_video(
        model,
        seq["lmk_noisy"],
        np.ones((n, 68)),
        s,
        cfg.focal_mode,
        cfg.focal * scale,
        [f * scale for f in cfg.focal_search],
        cfg.focal_search_frames,
        images if photo else None,
    )
    dt = time.perf_counter() - t0
    err = rot_err_deg(res.euler, seq["euler"])
    exp_true = seq["exp"]
    return {
        "photometric": photo,
        "seconds": round(dt, 2),
        "sec_per_1000_frames": round(dt / n * 1000, 2),
        "focal_true_px": seq["focal"],
        "focal_found_px": round(res.focal, 1),
        "focal_rel_err": round(abs(res.focal - seq["focal"]) / seq["focal"], 3),
        "rot_err_deg_mean": round(float(err.mean()), 2),
        "rot_err_deg_p95": round(float(np.percentile(err, 95)), 2),
        "trans_err_mean": np.abs(res.trans - seq["trans"]).mean(0).round(4).tolist(),
        "exp_rmse": round(float(np.sqrt(np.mean((res.exp - exp_true) ** 2))), 3),
        "exp_true_rms": round(float(np.sqrt(np.mean(exp_true**2))), 3),
        "exp_corr": round(float(np.corrcoef(res.exp.ravel(), exp_true.ravel())[0, 1]), 3),
        "exp_landmark_rel_err": round(_exp_landmark_err(model, res.exp, exp_true), 3),
        "lmk_rmse_px": round(float(np.median(res.lmk_rmse_px)), 3),
    }


def main() -> None:
    import torch

    from prep.models.bfm import BfmModel
    from prep.models.bfm_io import load_front_mat
    from prep.track.bfm_coarse import torch_threads
    from tests.fixtures.synthetic_bfm import write_synthetic_front_mat

    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.5, help="landmark noise sigma, px at 256")
    ap.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the landmarks-only fine run (saves a third of the time)",
    )
    args = ap.parse_args()
    size, focal = 256, 1100.0 * 256 / 512
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        "threads (the fits run with 1)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_synthetic_front_mat(folder / "BFM_model_front.mat")
        model = BfmModel(load_front_mat(folder / "BFM_model_front.mat"))
        with torch_threads(1):
            seq = make_clip(model, folder, args.frames, size, focal, args.noise)
            out = {
                "machine": machine,
                "frames": args.frames,
                "size": size,
                "landmark_noise_px": args.noise,
                "coarse": bench_coarse(model, seq, size),
                "fine": bench_fine(model, seq, folder, size, photo=True),
            }
            if not args.no_compare:
                out["fine_landmarks_only"] = bench_fine(model, seq, folder, size, photo=False)
    from prep.io.files import write_json  # strict JSON: an undefined number is null, not NaN

    write_json(RESULTS, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
