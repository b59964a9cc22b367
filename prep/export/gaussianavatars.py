"""GaussianAvatars exporter and reader (the layout VHAP's export_as_nerf_dataset.py writes).

Layout under ``export/gaussianavatars/``::

    images/<t:05d>_00.png          RGBA (alpha = matte; GaussianAvatars composites it over its
                                   background, black or --white_background), or RGB over
                                   ``export.background`` with export.ga_rgba=false (as VHAP does)
    fg_masks/<t:05d>_00.png        foreground masks
    flame_param/<t:05d>.npz        translation (1,3), rotation (1,3), neck_pose, jaw_pose (1,3),
                                   eyes_pose (1,6), shape (300,), expr (1,100),
                                   static_offset (1,5023,3)
    canonical_flame_param.npz      shape only, jaw opened 0.3 rad (as VHAP writes it)
    transforms.json                every timestep; transforms_{train,val,test}.json: VHAP's split
                                   (first ceil(70 %) train, the rest test, val empty: one camera)
    prep_export.json               FLAME version (GaussianAvatars loads flame2023.pkl by default)

GaussianAvatars reads only ``camera_angle_x`` per frame and renders a symmetric frustum
(scene/dataset_readers.py:231-235), so every image is re-cropped around the principal point with
``fy = fx`` (`prep.export.cameras.resample_maps`); ``cx, cy`` are still written, in VHAP's
half-pixel convention (``w / 2``). The world origin moves to the mean head position (VHAP's
``relocate_flame_meshes``): ``translation`` and ``transform_matrix`` shift together.
``transform_matrix`` is camera-to-world in OpenGL axes (GaussianAvatars flips y and z back).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.export.cameras import (
    NerfCamera,
    nerf_camera_to_canonical,
    relocate_world,
    resample_maps,
    to_gaussianavatars,
)
from prep.export.common import composite, selected_frames
from prep.export.common import write_if_needed as write_img
from prep.export.frames import ExportFrames
from prep.export.info import coefficient_notes, model_notes, write_export_info
from prep.io.files import load_npz, read_image, read_json, save_npz, write_json
from prep.models.flame_tracking import Tracking, load_tracking
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

N_SHAPE, N_EXPR, N_VERTS = 300, 100, 5023  # FlameGaussianModel(n_shape=300, n_expr=100)
CANONICAL_JAW = 0.3  # VHAP's canonical_flame_param.npz opens the jaw by 0.3 rad


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(a.shape[:-1] + (n,), np.float32)
    k = min(n, a.shape[-1])
    out[..., :k] = a[..., :k]
    return out


def flame_param(track: Tracking, i: int | None, transl: np.ndarray | None = None):
    """GaussianAvatars flame_param arrays of frame i (None: the canonical parameters).

    Args:
        transl: (3,) the frame's translation in the exported (relocated) world.
    """
    z3 = np.zeros((1, 3), np.float32)
    if i is None:
        pose = {
            "translation": z3,
            "rotation": z3,
            "neck_pose": z3,
            "jaw_pose": np.array([[CANONICAL_JAW, 0, 0]], np.float32),
            "eyes_pose": np.zeros((1, 6), np.float32),
            "expr": np.zeros((1, N_EXPR), np.float32),
        }
    else:
        pose = {
            "translation": np.asarray(transl, np.float32)[None],
            "rotation": track.global_pose[i][None].astype(np.float32),
            "neck_pose": track.neck_pose[i][None].astype(np.float32),
            "jaw_pose": track.jaw_pose[i][None].astype(np.float32),
            "eyes_pose": track.eyes_pose[i][None].astype(np.float32),
            "expr": _pad(track.expr[i][None], N_EXPR),
        }
    return {
        **pose,
        "shape": _pad(track.shape, N_SHAPE),
        "static_offset": np.zeros((1, N_VERTS, 3), np.float32),
    }


def vhap_split(n: int, train_fraction: float) -> dict[str, np.ndarray]:
    """VHAP's split_json for one camera: train = first ceil(n * f) timesteps, test = the rest,
    val = none (VHAP keeps a camera for validation, and there is only one)."""
    n_train = int(np.ceil(n * train_fraction))
    return {"train": np.arange(n_train), "val": np.arange(0), "test": np.arange(n_train, n)}


def export_gaussianavatars(subject: SubjectDir, cfg: ExportConfig, out: Path, force: bool) -> int:
    """Write the GaussianAvatars folder; returns the number of timesteps exported."""
    track = load_tracking(subject)
    idx = selected_frames(track, cfg.only_valid)
    size = tuple(int(v) for v in track.image_size)
    D_sel, K_out = resample_maps(track.K_frames[idx], size, centre=True, per_frame_focal=True)
    D = np.tile(np.eye(3), (track.n_frames, 1, 1))
    D[idx] = D_sel
    images = ExportFrames(subject, D, size)
    w2c, transl = relocate_world(track.w2c[idx], track.transl[idx])
    cams = [to_gaussianavatars(w2c[t][None], K_out[t], size) for t in range(len(idx))]
    frames = []
    for t, i in enumerate(progress(idx, total=len(idx), desc="export gaussianavatars")):
        _write_images(images, int(i), t, out, cfg, force)
        save_npz(out / "flame_param" / f"{t:05d}.npz", **flame_param(track, int(i), transl[t]))
        frames.append(_frame(cams[t], t, int(i)))
    save_npz(out / "canonical_flame_param.npz", **flame_param(track, None))
    header = {**_camera_fields(cams[0]), "camera_indices": [0]}
    write_json(
        out / "transforms.json",
        {
            **header,
            "timestep_indices": list(range(len(idx))),
            "flame_model": track.model,
            "frames": frames,
        },
    )
    for name, sel in vhap_split(len(idx), cfg.ga_train_fraction).items():
        doc = {**header, "timestep_indices": [int(t) for t in sel], "flame_model": track.model}
        if name == "val":
            doc["camera_indices"] = []
        write_json(out / f"transforms_{name}.json", {**doc, "frames": [frames[t] for t in sel]})
    notes = model_notes("gaussianavatars", track.model)
    notes += coefficient_notes("gaussianavatars", "expression", track.expr[idx], N_EXPR)
    if np.any(np.abs(track.eyelids[idx]) > 1e-6):
        notes.append("gaussianavatars: its FLAME has no eyelid blendshapes: the fit's are dropped")
    if cfg.ga_rgba:
        notes.append(
            "gaussianavatars: images are RGBA; train with --white_background to match "
            "VHAP's white composite (the alpha is applied either way)"
        )
    write_export_info(
        out,
        "gaussianavatars",
        track.model,
        notes,
        n_frames=len(idx),
        n_shape=N_SHAPE,
        n_expr=N_EXPR,
        image_size=list(size),
        world_offset=(track.transl[idx].mean(0)).tolist(),
        recropped=not images.identity,
    )
    return len(idx)


def _camera_fields(cam: NerfCamera) -> dict:
    return {
        "cx": cam.cx,
        "cy": cam.cy,
        "fl_x": cam.fl_x,
        "fl_y": cam.fl_y,
        "h": cam.h,
        "w": cam.w,
        "camera_angle_x": cam.camera_angle_x,
        "camera_angle_y": cam.camera_angle_y,
    }


def _frame(cam: NerfCamera, t: int, i: int) -> dict:
    return {
        "timestep_index": t,
        "timestep_index_original": i,
        "timestep_id": f"{t:05d}",
        "camera_index": 0,
        "camera_id": "00",
        **_camera_fields(cam),
        "transform_matrix": cam.c2w[0].tolist(),
        "file_path": f"images/{t:05d}_00.png",
        "fg_mask_path": f"fg_masks/{t:05d}_00.png",
        "flame_param_path": f"flame_param/{t:05d}.npz",
    }


def _write_images(images: ExportFrames, i: int, t: int, out: Path, cfg: ExportConfig, force):
    path = out / "images" / f"{t:05d}_00.png"
    if path.exists() and not force:
        return
    rgba = images.rgba(i)
    write_img(out / "fg_masks" / f"{t:05d}_00.png", images.mask(i, rgba), force)
    write_img(path, rgba if cfg.ga_rgba else composite(rgba, tuple(cfg.background)), force)


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
    """Read transforms.json (or transforms_<split>.json) of a GaussianAvatars/VHAP folder.

    VHAP writes ``cx, cy`` with pixel centres at ``x + 0.5``; a frame without them gets the
    image centre (GaussianAvatars' own assumption). A focal missing per frame comes from
    ``camera_angle_x``.
    """
    root = Path(root)
    tf = read_json(root / (f"transforms_{split}.json" if split else "transforms.json"))
    w2c, Ks, cams = [], [], []
    for f in tf["frames"]:
        w, h = int(f.get("w", tf.get("w"))), int(f.get("h", tf.get("h")))
        fov = f.get("camera_angle_x", tf.get("camera_angle_x"))
        fx = f.get("fl_x", tf.get("fl_x")) or w / (2 * math.tan(fov / 2))
        cam = NerfCamera(
            np.asarray(f["transform_matrix"], np.float64)[None],
            fx,
            f.get("fl_y", tf.get("fl_y")) or fx,
            f.get("cx", tf.get("cx", w / 2)),
            f.get("cy", tf.get("cy", h / 2)),
            w,
            h,
            opengl=True,
            pixel_offset=0.5,
        )
        wc, K = nerf_camera_to_canonical(cam)
        w2c.append(wc[0])
        Ks.append(K)
        cams.append(cam)
    if not cams:  # VHAP's val split of a one-camera capture is empty
        return GaussianAvatarsExport(root, [], np.zeros((0, 4, 4)), np.zeros((0, 3, 3)), [])
    return GaussianAvatarsExport(root, cams, np.stack(w2c), np.stack(Ks), tf["frames"])
