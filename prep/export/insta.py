"""INSTA exporter and reader (instant-ngp style transforms with FLAME meshes).

Layout under ``export/insta/`` (what INSTA's scripts/transforms.py + simplification.py +
postprocess.py leave, and INSTA-pytorch's insta/provider.py opens)::

    canonical.obj              tracked identity, zero expression, jaw open 12 deg (as
                               metrical-tracker's save_canonical), INSTA's simplified topology
                               (provider.py:136 opens it)
    images/<id>.png            RGBA crops (alpha = matte; cloth cleared as postprocess.py does)
    seg_mask/<id>.png          3-channel, INSTA's region code in the red channel (provider.py:270
                               keeps channel 2 of a BGR read): the face-parsing patch's colours
    depth/<id>.png             uint16 millimetres of camera-space z of the full FLAME mesh
    meshes/<id>.obj            tracked mesh in world space, simplified topology
    flame/exp/<id>.txt         100 expression coefficients (provider.py reads the first 16)
    transforms.json            every frame; transforms_{train,val,test}.json: INSTA's split
    prep_export.json

provider.py derives every per-frame path from ``file_path`` by replacing ``images`` (and
``png``), so all five per-frame files exist for every frame. ``<id>`` is the 0-based export index,
five digits. ``transform_matrix`` is camera-to-world in OpenCV axes; the principal point follows
INSTA's half-pixel rays (``i + 0.5``, utils.py:61). The world origin moves to the mean head
position (as metrical-tracker keeps the head at its origin). Split as INSTA: test = the last N
frames, train = the rest, val = the last 20; a clip shorter than 2N gets N clamped to a quarter
of it so train is never empty.
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
    to_insta,
)
from prep.export.common import selected_frames, write_if_needed, write_obj
from prep.export.flame_mesh import FlameVertices, Topology
from prep.export.frames import ExportFrames
from prep.export.info import write_export_info
from prep.io.files import read_image, read_json, write_bytes, write_image, write_json
from prep.models.flame_tracking import load_tracking
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

N_EXPR = 100  # INSTA's exp files hold metrical-tracker's 100 coefficients
DEPTH_SCALE = 0.001  # depth/ PNGs are uint16 millimetres (provider.py divides by 1000)
CLOTH_LABEL, CLOTH_CODE = 16, 90
# BiSeNet label -> INSTA region code (red channel), INSTA scripts/patches/face-parsing colours.
INSTA_SEG_CODES = np.array(
    [0, 250, 240, 230, 210, 200, 190, 180, 170, 160, 150, 140, 130, 120, 110, 100, 90, 80, 70],
    np.uint8,
)


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


def seg_mask(labels: np.ndarray) -> np.ndarray:
    """(H,W) BiSeNet labels -> (H,W,3) RGB image whose red channel holds INSTA's codes."""
    out = np.zeros(labels.shape + (3,), np.uint8)
    out[..., 0] = INSTA_SEG_CODES[np.clip(labels, 0, len(INSTA_SEG_CODES) - 1)]
    return out


def export_insta(
    subject: SubjectDir,
    cfg: ExportConfig,
    out: Path,
    force: bool,
    flame: FlameVertices | None = None,
    topology: Topology | None = None,
) -> int:
    """Write the INSTA folder; returns the number of frames exported.

    Args:
        flame: FLAME vertices of the tracking (meshes, depth, canonical.obj); None writes no
            meshes (INSTA-pytorch cannot train without them: a warning says so).
        topology: INSTA's simplified topology for meshes/ and canonical.obj (None: FLAME's own,
            with a warning: insta/masks.py's face ids would then point at the wrong faces).
    """
    track = load_tracking(subject)
    idx = selected_frames(track, cfg.only_valid)
    size = tuple(int(v) for v in track.image_size)
    D_sel, K_out = resample_maps(track.K_frames[idx], size, centre=False)
    D = np.tile(np.eye(3), (track.n_frames, 1, 1))
    D[idx] = D_sel
    images = ExportFrames(subject, D, size)
    w2c, transl = relocate_world(track.w2c[idx], track.transl[idx])
    cam = to_insta(w2c, K_out[0], size)
    ids = [f"{j:05d}" for j in range(len(idx))]
    for j, i in enumerate(progress(idx, total=len(idx), desc="export insta")):
        _write_frame(images, int(i), out, ids[j], cfg, force)
        exp = np.zeros(N_EXPR)
        n = min(N_EXPR, track.expr.shape[1])
        exp[:n] = track.expr[i, :n]
        write_bytes(
            out / "flame" / "exp" / f"{ids[j]}.txt",
            ("\n".join(f"{x:.8f}" for x in exp) + "\n").encode(),
        )
    notes = []
    if flame is not None:
        topo = topology or Topology(np.arange(len(flame.model.v_template)), flame.faces)
        _write_meshes(out, idx, ids, flame, transl, (w2c, K_out[0], size), topo, force)
        write_obj(out / "canonical.obj", topo.apply(flame.canonical()), topo.faces)
        if topology is None:
            notes.append(
                "insta: meshes use FLAME's full topology; INSTA's masks.py face ids "
                "index its simplified one (set assets.insta_topology)"
            )
    else:
        notes.append("insta: no meshes/, depth/ or canonical.obj: INSTA-pytorch cannot load this")
    frames = [_frame(cam, j, ids[j]) for j in range(len(idx))]
    header = {**_header(cam), "flame_model": track.model}
    write_json(out / "transforms.json", {**header, "frames": frames})
    split = insta_split(len(idx), cfg.insta_test_frames, cfg.insta_val_frames)
    for name, sel in split.items():
        write_json(out / f"transforms_{name}.json", {**header, "frames": [frames[k] for k in sel]})
    write_export_info(
        out,
        "insta",
        track.model,
        notes,
        n_frames=len(idx),
        n_expr=N_EXPR,
        image_size=list(size),
        world_offset=track.transl[idx].mean(0).tolist(),
        recropped=not images.identity,
    )
    return len(idx)


def _write_frame(images: ExportFrames, i: int, out: Path, fid: str, cfg, force: bool) -> None:
    path = out / "images" / f"{fid}.png"
    if path.exists() and not force:
        return
    rgba = images.rgba(i)
    labels = images.labels(i)
    if labels is None:
        labels = np.where(rgba[..., 3] > 127, 1, 0).astype(np.uint8)  # no parsing: skin / bg
    if cfg.insta_remove_cloth:  # INSTA's postprocess.py: cloth cleared from colour and alpha
        rgba = np.where((labels == CLOTH_LABEL)[..., None], 0, rgba).astype(np.uint8)
    write_if_needed(out / "seg_mask" / f"{fid}.png", seg_mask(labels), force)
    write_if_needed(path, rgba, force)


def _write_meshes(out: Path, idx, ids, flame: FlameVertices, transl, camera, topo, force, chunk=16):
    """meshes/ (INSTA topology) and depth/ (full FLAME mesh), by chunks of frames."""
    w2c, K, size = camera

    def done(k: int) -> bool:
        return (out / "meshes" / f"{ids[k]}.obj").exists() and (
            out / "depth" / f"{ids[k]}.png"
        ).exists()

    for c0 in range(0, len(idx), chunk):
        todo = [k for k in range(c0, min(c0 + chunk, len(idx))) if force or not done(k)]
        if not todo:
            continue
        verts = flame.frames(np.asarray(idx)[todo], transl[todo])
        for k, v in zip(todo, verts, strict=True):
            write_obj(out / "meshes" / f"{ids[k]}.obj", topo.apply(v), topo.faces)
        for k, d in zip(todo, depth_mm(verts, flame.faces, w2c[todo], K, size), strict=True):
            write_image(out / "depth" / f"{ids[k]}.png", d)


def depth_mm(verts, faces, w2c, K, image_size) -> np.ndarray:
    """(n,H,W) uint16 camera-space depth in millimetres of meshes (n,V,3); 0 where uncovered."""
    import torch

    from prep.render.raster import rasterize, world_to_camera

    with torch.no_grad():
        v_cam = world_to_camera(
            torch.as_tensor(np.asarray(verts, np.float32)),
            torch.as_tensor(np.asarray(w2c, np.float32)),
        )
        frags = rasterize(
            v_cam,
            torch.as_tensor(np.asarray(faces), dtype=torch.long),
            torch.as_tensor(np.asarray(K, np.float32)),
            (int(image_size[0]), int(image_size[1])),
        )
    mm = np.where(frags.mask.numpy(), np.round(frags.depth.numpy() / DEPTH_SCALE), 0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def _header(cam: NerfCamera) -> dict:
    return {
        "w": cam.w,
        "h": cam.h,
        "cx": cam.cx,
        "cy": cam.cy,
        "fl_x": cam.fl_x,
        "fl_y": cam.fl_y,
        "camera_angle_x": cam.camera_angle_x,
        "camera_angle_y": cam.camera_angle_y,
        "x_fov": math.degrees(cam.camera_angle_x),
        "y_fov": math.degrees(cam.camera_angle_y),
        "integer_depth_scale": DEPTH_SCALE,
    }


def _frame(cam: NerfCamera, j: int, fid: str) -> dict:
    return {
        "file_path": f"images/{fid}.png",
        "exp_path": f"flame/exp/{fid}.txt",
        "mesh_path": f"meshes/{fid}.obj",
        "depth_path": f"depth/{fid}.png",
        "seg_mask_path": f"seg_mask/{fid}.png",
        "transform_matrix": cam.c2w[j].tolist(),
    }


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
        tf.get("fl_y", tf["fl_x"]),
        tf["cx"],
        tf["cy"],
        tf["w"],
        tf["h"],
        opengl=False,
        pixel_offset=0.5,
    )
    w2c, K = nerf_camera_to_canonical(cam)
    exp = np.stack([np.loadtxt(root / _exp_path(f)) for f in tf["frames"]])
    splits = {}
    for name in ("train", "val", "test"):
        p = root / f"transforms_{name}.json"
        if p.exists():
            splits[name] = [f["file_path"] for f in read_json(p)["frames"]]
    return InstaExport(root, cam, w2c, K, exp, tf["frames"], splits)


def _exp_path(frame: dict) -> str:
    """provider.py:273 derives it from file_path; exp_path is what transforms.py writes."""
    return frame.get("exp_path") or frame["file_path"].replace("images", "flame/exp").replace(
        ".png", ".txt"
    )
