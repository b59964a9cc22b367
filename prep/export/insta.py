"""INSTA exporter and reader (instant-ngp style transforms with FLAME meshes).

Layout under ``export/insta/``::

    images/<id>.png            RGBA crops (alpha = matte)
    seg_mask/<id>.png          parsing labels (when parsing ran)
    flame/exp/<id>.txt         100 expression coefficients (zero-padded), one per line
    meshes/<id>.obj            tracked FLAME mesh in world space (when the FLAME layer is given)
    depth/<id>.png             uint16 millimetres of camera-space z of that mesh (0 = no mesh)
    transforms.json            every frame; transforms_{train,val,test}.json: INSTA's split

``<id>`` is the 0-based export index, five digits. ``transform_matrix`` is camera-to-world in
OpenCV axes and the principal point follows instant-ngp's half-pixel convention (see
`prep.export.cameras`). Split as INSTA: test = the last N frames, train = the rest, val = the last
20 frames; when the clip is short, N is clamped to a quarter of it so train is never empty.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.export.cameras import NerfCamera, nerf_camera_to_canonical, to_insta
from prep.export.common import (
    load_rgba,
    load_tracking,
    selected_frames,
    write_if_needed,
    write_obj,
)
from prep.io.files import read_image, read_json, write_bytes, write_image, write_json
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

N_EXPR = 100  # INSTA reads 100 expression coefficients
DEPTH_SCALE = 0.001  # depth/ PNGs are uint16 millimetres
# vertices_fn(frame indices (n,)) -> (vertices (n,V,3) world space, faces (F,3))
VerticesFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def insta_split(n: int, n_test: int, n_val: int) -> dict[str, np.ndarray]:
    """INSTA's split of n frames: train = all but the last n_test, test = the last n_test,
    val = the last n_val (n_test clamped to n/4 for short clips)."""
    if n < 2:
        return {"train": np.arange(n), "val": np.arange(n), "test": np.arange(n)}
    n_test = min(n_test, max(1, n // 4)) if n <= 2 * n_test else n_test
    n_val = min(n_val, n_test)
    return {
        "train": np.arange(0, n - n_test),
        "val": np.arange(n - n_val, n),
        "test": np.arange(n - n_test, n),
    }


def export_insta(
    subject: SubjectDir,
    cfg: ExportConfig,
    out: Path,
    force: bool,
    vertices_fn: VerticesFn | None = None,
) -> int:
    """Write the INSTA folder; returns the number of frames exported."""
    track = load_tracking(subject)
    idx = selected_frames(track, cfg.only_valid)
    cam = to_insta(track.w2c[idx], track.K, track.image_size)
    ids = [f"{j:05d}" for j in range(len(idx))]
    seg = subject.parsing_dir.is_dir()
    for j, i in enumerate(progress(idx, total=len(idx), desc="export insta")):
        write_if_needed(out / "images" / f"{ids[j]}.png", load_rgba(subject, int(i)), force)
        if seg and subject.parsing_path(int(i)).exists():
            labels = read_image(subject.parsing_path(int(i)), "gray")
            write_if_needed(out / "seg_mask" / f"{ids[j]}.png", labels, force)
        exp = np.zeros(N_EXPR)
        n = min(N_EXPR, track.expr.shape[1])
        exp[:n] = track.expr[i, :n]
        write_bytes(
            out / "flame" / "exp" / f"{ids[j]}.txt",
            ("\n".join(f"{x:.8f}" for x in exp) + "\n").encode(),
        )
    if vertices_fn is not None:
        depth = (track.w2c[idx], track.K, track.image_size) if cfg.insta_depth else None
        _write_meshes(out, idx, ids, vertices_fn, depth, force)
    meshes = vertices_fn is not None
    frames = [_frame(cam, j, ids[j], seg, meshes, meshes and cfg.insta_depth)
              for j in range(len(idx))]  # fmt: skip
    header = _header(cam)
    write_json(out / "transforms.json", {**header, "frames": frames})
    split = insta_split(len(idx), cfg.insta_test_frames, cfg.insta_val_frames)
    for name, sel in split.items():
        write_json(out / f"transforms_{name}.json", {**header, "frames": [frames[k] for k in sel]})
    return len(idx)


def _write_meshes(out: Path, idx, ids, vertices_fn: VerticesFn, depth, force: bool, chunk=16):
    """Meshes (and depth maps when `depth` = (w2c (n,4,4), K, (h,w)) is given), by chunks."""

    def done(k: int) -> bool:
        ok = (out / "meshes" / f"{ids[k]}.obj").exists()
        return ok and (depth is None or (out / "depth" / f"{ids[k]}.png").exists())

    for c0 in range(0, len(idx), chunk):
        todo = [k for k in range(c0, min(c0 + chunk, len(idx))) if force or not done(k)]
        if not todo:
            continue
        verts, faces = vertices_fn(np.asarray(idx)[todo])
        for k, v in zip(todo, verts, strict=True):
            write_obj(out / "meshes" / f"{ids[k]}.obj", v, faces)
        if depth is not None:
            w2c, K, size = depth
            for k, d in zip(todo, depth_mm(verts, faces, w2c[todo], K, size), strict=True):
                write_image(out / "depth" / f"{ids[k]}.png", d)


def depth_mm(verts, faces, w2c, K, image_size) -> np.ndarray:
    """(n,H,W) uint16 camera-space depth in millimetres of meshes (n,V,3); 0 where uncovered."""
    import torch

    from prep.render.raster import rasterize, world_to_camera

    with torch.no_grad():
        v_cam = world_to_camera(torch.as_tensor(np.asarray(verts, np.float32)),
                                torch.as_tensor(np.asarray(w2c, np.float32)))  # fmt: skip
        frags = rasterize(v_cam, torch.as_tensor(np.asarray(faces), dtype=torch.long),
                          torch.as_tensor(np.asarray(K, np.float32)),
                          (int(image_size[0]), int(image_size[1])))  # fmt: skip
    mm = np.where(frags.mask.numpy(), np.round(frags.depth.numpy() / DEPTH_SCALE), 0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def _header(cam: NerfCamera) -> dict:
    return {
        "w": cam.w, "h": cam.h, "cx": cam.cx, "cy": cam.cy, "fl_x": cam.fl_x, "fl_y": cam.fl_y,
        "camera_angle_x": cam.camera_angle_x, "camera_angle_y": cam.camera_angle_y,
        "x_fov": math.degrees(cam.camera_angle_x), "y_fov": math.degrees(cam.camera_angle_y),
        "integer_depth_scale": DEPTH_SCALE,
    }  # fmt: skip


def _frame(cam: NerfCamera, j: int, fid: str, seg: bool, meshes: bool, depth: bool) -> dict:
    f = {
        "file_path": f"images/{fid}.png",
        "exp_path": f"flame/exp/{fid}.txt",
        "transform_matrix": cam.c2w[j].tolist(),
    }
    if meshes:
        f["mesh_path"] = f"meshes/{fid}.obj"
    if depth:
        f["depth_path"] = f"depth/{fid}.png"
    if seg:
        f["seg_mask_path"] = f"seg_mask/{fid}.png"
    return f


@dataclass
class InstaExport:
    """An INSTA folder read back: camera (canonical w2c and K), expressions, file lists."""

    root: Path
    camera: NerfCamera
    w2c: np.ndarray  # (T,4,4) OpenCV world-to-camera
    K: np.ndarray  # (3,3) integer-pixel-centre intrinsics
    exp: np.ndarray  # (T,100)
    frames: list[dict]
    splits: dict[str, list[str]]  # split name -> file paths

    def image(self, k: int) -> np.ndarray:
        return read_image(self.root / self.frames[k]["file_path"], "rgba")


def read_insta(root: Path | str) -> InstaExport:
    """Read an INSTA folder (transforms.json plus splits and expressions)."""
    root = Path(root)
    tf = read_json(root / "transforms.json")
    c2w = np.asarray([f["transform_matrix"] for f in tf["frames"]], np.float64)
    cam = NerfCamera(
        c2w,
        tf["fl_x"],
        tf["fl_y"],
        tf["cx"],
        tf["cy"],
        tf["w"],
        tf["h"],
        opengl=False,
        pixel_offset=0.5,
    )
    w2c, K = nerf_camera_to_canonical(cam)
    exp = np.stack([np.loadtxt(root / f["exp_path"]) for f in tf["frames"]])
    splits = {}
    for name in ("train", "val", "test"):
        p = root / f"transforms_{name}.json"
        if p.exists():
            splits[name] = [f["file_path"] for f in read_json(p)["frames"]]
    return InstaExport(root, cam, w2c, K, exp, tf["frames"], splits)
