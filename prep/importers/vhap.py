"""Import a VHAP / GaussianAvatars export (what VHAP's export_as_nerf_dataset.py writes).

Layout: ``transforms.json`` (or transforms_{train,val,test}.json) with per-frame
``timestep_index, camera_index, transform_matrix`` (camera-to-world, OpenGL axes), ``fl_x, fl_y,
cx, cy`` (VHAP's half-pixel convention: ``cx = w / 2`` when centred), ``file_path``,
``fg_mask_path``, ``flame_param_path``; ``flame_param/<t>.npz`` with ``translation, rotation,
neck_pose, jaw_pose (1,3), eyes_pose (1,6), shape (300,), expr (1,100)`` and optionally
``static_offset`` (FLAME + translation in world space, vhap/model/flame.py). One camera is
imported (camera_index 0, the monocular case); the others are listed in the notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prep.errors import BadInputError
from prep.export.cameras import VHAP_PIXEL_OFFSET
from prep.importers import Imported, has_alpha
from prep.io.files import read_json
from prep.models.camera import K_matrix, invert_rigid, opengl_to_opencv_c2w
from prep.models.flame_tracking import PER_FRAME

SPLITS = ("transforms.json", "transforms_train.json", "transforms_val.json", "transforms_test.json")


def _frames(folder: Path) -> tuple[dict, list[dict], list[int]]:
    """The header and every frame of camera 0, one per timestep, in timestep order."""
    docs = [read_json(folder / n) for n in SPLITS[:1] if (folder / n).is_file()]
    if not docs:
        docs = [read_json(folder / n) for n in SPLITS[1:] if (folder / n).is_file()]
    if not docs:
        raise BadInputError(f"{folder} has no transforms.json (a VHAP/GaussianAvatars export)")
    by_t: dict[int, dict] = {}
    cams = set()
    for doc in docs:
        for f in doc["frames"]:
            cam = int(f.get("camera_index", 0))
            cams.add(cam)
            if cam == 0:
                by_t.setdefault(int(f["timestep_index"]), f)
    if not by_t:
        raise BadInputError(f"{folder}: no frame of camera 0")
    return docs[0], [by_t[t] for t in sorted(by_t)], sorted(cams)


def _file(folder: Path, frame: dict) -> Path:
    name = frame["file_path"]
    return folder / (name if "." in Path(name).name else name + ".png")


def frame_files(folder: Path) -> list[Path]:
    """Images of camera 0 in timestep order."""
    return [_file(folder, f) for f in _frames(folder)[1]]


def read(folder: Path) -> Imported:
    """Read a VHAP / GaussianAvatars export folder (see the module docstring)."""
    header, frames, cams = _frames(folder)
    files = [_file(folder, f) for f in frames]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise BadInputError(f"VHAP export {folder}: missing images {missing[:3]}")
    T = len(frames)
    w2c = np.zeros((T, 4, 4))
    K = np.zeros((T, 3, 3))
    params: dict[str, list] = {k: [] for k in (*PER_FRAME, "transl") if k != "eyelids"}
    shape, offsets = None, False
    for t, f in enumerate(frames):
        c2w = opengl_to_opencv_c2w(np.asarray(f["transform_matrix"], np.float64))
        w2c[t] = invert_rigid(c2w)
        get = lambda k, f=f: f.get(k, header.get(k))  # noqa: E731
        off = VHAP_PIXEL_OFFSET
        K[t] = K_matrix(get("fl_x"), get("fl_y"), get("cx") - off, get("cy") - off)
        z = np.load(folder / f["flame_param_path"])
        shape = z["shape"] if shape is None else shape
        params["expr"].append(np.reshape(z["expr"], -1))
        params["global_pose"].append(np.reshape(z["rotation"], 3))
        params["neck_pose"].append(np.reshape(z["neck_pose"], 3))
        params["jaw_pose"].append(np.reshape(z["jaw_pose"], 3))
        params["eyes_pose"].append(np.reshape(z["eyes_pose"], 6))
        params["transl"].append(np.reshape(z["translation"], 3))
        offsets |= "static_offset" in z and bool(np.any(np.abs(z["static_offset"]) > 1e-9))
    out = {k: np.asarray(v, np.float64) for k, v in params.items()}
    out["shape"] = np.asarray(shape, np.float64).reshape(-1)
    out["eyelids"] = np.zeros((T, 2))
    notes = []
    if offsets:
        notes.append(
            "vhap: static_offset (per-vertex offsets) is not part of our FLAME tracking "
            "and is dropped"
        )
    if len(cams) > 1:
        notes.append(f"vhap: cameras {cams[1:]} are not imported (camera 0 only)")
    masks = None
    if all("fg_mask_path" in f and (folder / f["fg_mask_path"]).is_file() for f in frames):
        masks = [folder / f["fg_mask_path"] for f in frames]
    h, w = (frames[0].get(k, header.get(k)) for k in ("h", "w"))
    if h is None or w is None:
        raise BadInputError(f"{folder}: transforms.json gives no image size (h, w)")
    h, w = int(h), int(w)
    alpha = masks is None and has_alpha(files[0])
    model = header.get("flame_model")  # our exports record it; VHAP defaults to flame2023
    if model is None:
        notes.append(
            "vhap: the export does not say which FLAME it used (VHAP's default is "
            "flame2023): the configured flame= is assumed"
        )
    sources = [folder / n for n in SPLITS if (folder / n).is_file()]
    return Imported(
        files,
        (h, w),
        alpha,
        masks,
        out,
        w2c,
        K,
        model,
        None,
        None,
        None,
        notes,
        sources + [folder / f["flame_param_path"] for f in frames],
    )
