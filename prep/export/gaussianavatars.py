"""GaussianAvatars exporter and reader (the VHAP export layout, one camera).

Layout under ``export/gaussianavatars/``::

    images/<t:05d>_00.png          RGB crops
    fg_masks/<t:05d>_00.png        foreground masks
    flame_param/<t:05d>.npz        translation (1,3), rotation (1,3), neck_pose, jaw_pose (1,3),
                                   eyes_pose (1,6), shape (300,), expr (1,100),
                                   static_offset (1,V,3)
    canonical_flame_param.npz      the same keys with zero pose/expression (the shape only)
    transforms.json                every timestep; transforms_{train,val,test}.json: first 70% of
                                   the timesteps train, the rest val and test

``transform_matrix`` is camera-to-world in OpenGL axes (GaussianAvatars flips y and z back).
FLAME parameters keep our canonical meaning (the posed mesh plus ``translation`` is in world
space), with shape padded to 300 and expression to 100 coefficients as GaussianAvatars builds FLAME.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.export.cameras import NerfCamera, nerf_camera_to_canonical, to_gaussianavatars
from prep.export.common import (
    Tracking,
    load_mask,
    load_rgba,
    load_tracking,
    selected_frames,
    write_if_needed,
)
from prep.io.files import load_npz, read_image, read_json, save_npz, write_json
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

N_SHAPE, N_EXPR, N_VERTS = 300, 100, 5023  # what GaussianAvatars' FLAME layer is built with


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(a.shape[:-1] + (n,), np.float32)
    k = min(n, a.shape[-1])
    out[..., :k] = a[..., :k]
    return out


def flame_param(track: Tracking, i: int | None) -> dict[str, np.ndarray]:
    """GaussianAvatars flame_param arrays of frame i (None: the canonical, zero-pose params)."""
    z3 = np.zeros((1, 3), np.float32)
    if i is None:
        pose = {"translation": z3, "rotation": z3, "neck_pose": z3, "jaw_pose": z3,
                "eyes_pose": np.zeros((1, 6), np.float32),
                "expr": np.zeros((1, N_EXPR), np.float32)}  # fmt: skip
    else:
        pose = {
            "translation": track.transl[i][None].astype(np.float32),
            "rotation": track.global_pose[i][None].astype(np.float32),
            "neck_pose": track.neck_pose[i][None].astype(np.float32),
            "jaw_pose": track.jaw_pose[i][None].astype(np.float32),
            "eyes_pose": track.eyes_pose[i][None].astype(np.float32),
            "expr": _pad(track.expr[i][None], N_EXPR),
        }
    return {**pose, "shape": _pad(track.shape, N_SHAPE),
            "static_offset": np.zeros((1, N_VERTS, 3), np.float32)}  # fmt: skip


def export_gaussianavatars(subject: SubjectDir, cfg: ExportConfig, out: Path, force: bool) -> int:
    """Write the GaussianAvatars folder; returns the number of timesteps exported."""
    track = load_tracking(subject)
    idx = selected_frames(track, cfg.only_valid)
    # one camera per frame: VHAP/GaussianAvatars read intrinsics per frame (a moving crop works)
    cams = [to_gaussianavatars(track.w2c[i][None], track.K_frames[i], track.image_size)
            for i in idx]  # fmt: skip
    frames = []
    for t, i in enumerate(progress(idx, total=len(idx), desc="export gaussianavatars")):
        cam = cams[t]
        rgba = load_rgba(subject, int(i))
        mask = load_mask(subject, int(i))
        write_if_needed(out / "images" / f"{t:05d}_00.png", rgba[..., :3], force)
        write_if_needed(
            out / "fg_masks" / f"{t:05d}_00.png", rgba[..., 3] if mask is None else mask, force
        )
        save_npz(out / "flame_param" / f"{t:05d}.npz", **flame_param(track, int(i)))
        frames.append({
            "timestep_index": t, "timestep_index_original": int(i), "timestep_id": f"{t:05d}",
            "camera_index": 0, "camera_id": "00",
            "cx": cam.cx, "cy": cam.cy, "fl_x": cam.fl_x, "fl_y": cam.fl_y, "h": cam.h, "w": cam.w,
            "camera_angle_x": cam.camera_angle_x, "camera_angle_y": cam.camera_angle_y,
            "transform_matrix": cam.c2w[0].tolist(),
            "file_path": f"images/{t:05d}_00.png",
            "fg_mask_path": f"fg_masks/{t:05d}_00.png",
            "flame_param_path": f"flame_param/{t:05d}.npz",
        })  # fmt: skip
    save_npz(out / "canonical_flame_param.npz", **flame_param(track, None))
    cam = cams[0]
    header = {
        "cx": cam.cx, "cy": cam.cy, "fl_x": cam.fl_x, "fl_y": cam.fl_y, "h": cam.h, "w": cam.w,
        "camera_angle_x": cam.camera_angle_x, "camera_angle_y": cam.camera_angle_y,
        "camera_indices": [0], "timestep_indices": list(range(len(idx))),
    }  # fmt: skip
    write_json(out / "transforms.json", {**header, "frames": frames})
    n_train = max(1, int(round(cfg.ga_train_fraction * len(idx))))
    parts = {"train": frames[:n_train], "val": frames[n_train:] or frames[-1:]}
    parts["test"] = parts["val"]
    for name, fr in parts.items():
        ts = [f["timestep_index"] for f in fr]
        split = {**header, "timestep_indices": ts, "frames": fr}
        write_json(out / f"transforms_{name}.json", split)
    return len(idx)


@dataclass
class GaussianAvatarsExport:
    """A GaussianAvatars folder read back."""

    root: Path
    cameras: list[NerfCamera]  # one per frame (as VHAP writes them)
    w2c: np.ndarray  # (T,4,4) OpenCV
    K: np.ndarray  # (T,3,3) per-frame intrinsics, canonical convention
    frames: list[dict]

    def flame_param(self, t: int) -> dict[str, np.ndarray]:
        return load_npz(self.root / self.frames[t]["flame_param_path"])

    def image(self, t: int) -> np.ndarray:
        return read_image(self.root / self.frames[t]["file_path"])

    def mask(self, t: int) -> np.ndarray:
        return read_image(self.root / self.frames[t]["fg_mask_path"], "gray")


def read_gaussianavatars(root: Path | str, split: str | None = None) -> GaussianAvatarsExport:
    """Read transforms.json (or transforms_<split>.json) of a GaussianAvatars/VHAP folder."""
    root = Path(root)
    tf = read_json(root / (f"transforms_{split}.json" if split else "transforms.json"))
    w2c, Ks, cams = [], [], []
    for f in tf["frames"]:
        cam = NerfCamera(np.asarray(f["transform_matrix"], np.float64)[None],
                         f.get("fl_x", tf.get("fl_x")), f.get("fl_y", tf.get("fl_y")),
                         f.get("cx", tf.get("cx")), f.get("cy", tf.get("cy")),
                         int(f.get("w", tf.get("w"))), int(f.get("h", tf.get("h"))),
                         opengl=True, pixel_offset=0.0)  # fmt: skip
        w, K = nerf_camera_to_canonical(cam)
        w2c.append(w[0])
        Ks.append(K)
        cams.append(cam)
    return GaussianAvatarsExport(root, cams, np.stack(w2c), np.stack(Ks), tf["frames"])
