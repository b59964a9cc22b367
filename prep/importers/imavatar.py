"""Import an IMAvatar / HRAvatar subject folder.

Layout (IMAvatar's preprocess/ and HRAvatar's preprocess/ leave it; our imavatar and hravatar
exports too)::

    image/ (or images/)   frames, RGB (IMAvatar) or RGBA (HRAvatar's crop_and_matting.py)
    mask/                 optional masks (grey or 3 channels), same file names
    keypoint.json         {file name: [[x, y] x 68]} face-alignment points, image pixels
    iris.json             optional {file name: [x_a, y_a, x_b, y_b]} (the fitter appends
                          iris[[1, 0]] after the 68 points: a is the subject's left eye)
    code.json             optional DECA codes (fit_flame fit_flame.init=deca_code reads them)
    flame_params.json     IMAvatar's fit (optimize.py): world_mat per frame, FLAME x4
    tracked_params.json   HRAvatar's (optimize.py 403-427): the same fit keyed by file name

The camera comes from flame_params.json when present (``world_mat``, normalised intrinsics with
fx negated), else from tracked_params.json (``intrinsics`` [fx, fy, cx, cy] in pixels, per-frame
4x4 ``world_mat`` and ``translation``, FLAME x4): ``x_cv = F (v + t / 4 + translation)``. Both
are the fit's own convention (its landmarks and cx share one pixel convention), which our
integer-pixel-centre convention takes over unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prep.datasets.base import check_same_size, list_images
from prep.errors import BadInputError
from prep.export.cameras import IMAVATAR_SCALE
from prep.export.imavatar_json import read_flame_params_json
from prep.importers import Imported, has_alpha
from prep.io.files import read_json
from prep.models.camera import CV_TO_GL, K_matrix
from prep.models.flame_tracking import PER_FRAME


def frame_files(folder: Path) -> list[Path]:
    """The images in frame order (image/ or images/, natural order as HRAvatar's natsorted)."""
    for name in ("image", "images"):
        if (folder / name).is_dir():
            return list_images(folder / name)
    raise BadInputError(f"{folder} has no image/ folder (an IMAvatar/HRAvatar subject)")


def _points(folder: Path, names: list[str], n: int, key: str) -> np.ndarray | None:
    """(T, n, 2) points from keypoint.json / iris.json keyed by file name (NaN where absent)."""
    path = folder / key
    if not path.is_file():
        return None
    d = read_json(path)
    out = np.full((len(names), n, 2), np.nan)
    for i, name in enumerate(names):
        row = d.get(name, d.get(Path(name).stem))
        if row is not None:
            pts = np.asarray(row, np.float64).reshape(-1, 2)
            if len(pts) != n:
                raise BadInputError(f"{path}: {name} has {len(pts)} points, expected {n}")
            out[i] = pts
    return out


def _from_flame_params(path: Path, names: list[str], size) -> tuple[dict, np.ndarray, np.ndarray]:
    p = read_flame_params_json(path)
    by_stem = {s: k for k, s in enumerate(p.stems)}
    rows = [by_stem.get(Path(n).stem) for n in names]
    if any(r is None for r in rows):
        missing = [n for n, r in zip(names, rows, strict=True) if r is None][:3]
        raise BadInputError(f"{path} has no frame for {missing}")
    c = p.canonical(size)
    take = np.asarray(rows, np.int64)  # every row was found
    per = {k: np.asarray(c[k])[take] for k in (*PER_FRAME, "transl")}
    T = len(names)
    return (
        {**per, "shape": c["shape"]},
        np.repeat(c["w2c"][:1], T, 0),
        np.repeat(c["K"][None], T, 0),
    )


def _from_tracked_params(path: Path, names: list[str]) -> tuple[dict, np.ndarray, np.ndarray]:
    d = read_json(path)
    fx, fy, cx, cy = (float(v) for v in d["intrinsics"])
    T = len(names)
    rows = []
    for name in names:
        e = d.get(Path(name).stem, d.get(name))
        if e is None:
            raise BadInputError(f"{path} has no entry for {name}")
        rows.append(e)
    pose = np.asarray([np.reshape(e["fullposecode"], -1) for e in rows], np.float64)
    wm = np.asarray([e.get("world_mat", d["world_mat"]) for e in rows], np.float64)[:, :3]
    if not np.allclose(wm[:, :, :3], np.eye(3), atol=1e-6):
        raise BadInputError(f"{path}: world_mat rotates; HRAvatar's optimize.py writes identity")
    tr = np.asarray([np.reshape(e.get("translation", [0, 0, 0]), 3) for e in rows], np.float64)
    eyelids = np.asarray([np.reshape(e.get("eyelids", [0, 0]), 2) for e in rows], np.float64)
    params = {
        "shape": np.asarray(d["shapecode"], np.float64).reshape(-1),
        "expr": np.asarray([np.reshape(e["expcode"], -1) for e in rows], np.float64),
        "global_pose": pose[:, 0:3],
        "neck_pose": pose[:, 3:6],
        "jaw_pose": pose[:, 6:9],
        "eyes_pose": pose[:, 9:15],
        "eyelids": eyelids,
        "transl": wm[:, :, 3] / IMAVATAR_SCALE + tr,  # x_gl = 4 (v + translation) + t
    }
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, :3, :3] = CV_TO_GL
    K = np.tile(K_matrix(fx, fy, cx, cy), (T, 1, 1))
    return params, w2c, K


def read(folder: Path) -> Imported:
    """Read an IMAvatar / HRAvatar subject folder (see the module docstring)."""
    frames = frame_files(folder)
    w, h = check_same_size(frames)
    names = [p.name for p in frames]
    masks = None
    if (folder / "mask").is_dir():
        masks = [folder / "mask" / n for n in names]
        missing = [p.name for p in masks if not p.is_file()]
        if missing:
            raise BadInputError(f"{folder / 'mask'} lacks {missing[:3]} (one mask per image)")
    params = w2c = K = None
    sources = [
        p for p in (folder / "flame_params.json", folder / "tracked_params.json") if p.is_file()
    ]
    if (folder / "flame_params.json").is_file():
        params, w2c, K = _from_flame_params(folder / "flame_params.json", names, (h, w))
    elif (folder / "tracked_params.json").is_file():
        params, w2c, K = _from_tracked_params(folder / "tracked_params.json", names)
    lmk = _points(folder, names, 68, "keypoint.json")
    iris = _points(folder, names, 2, "iris.json")
    if lmk is None and params is None:
        raise BadInputError(
            f"{folder} has neither keypoint.json nor flame_params.json / "
            "tracked_params.json: nothing to import"
        )
    notes = []
    if (folder / "code.json").is_file():
        notes.append(
            f"imavatar: DECA codes found: re-fit with fit_flame.init=deca_code "
            f"fit_flame.deca_code={folder / 'code.json'}"
        )
    model = None
    for src in sources:
        model = read_json(src).get("flame_model", model)  # our exports record it
    alpha = has_alpha(frames[0])
    labels = [folder / "semantic" / n for n in names]
    return Imported(
        frames,
        (h, w),
        alpha and masks is None,
        masks,
        params,
        w2c,
        K,
        model or "flame2020",
        lmk,
        iris,
        None,
        notes,
        sources + [folder / n for n in ("keypoint.json", "iris.json") if (folder / n).is_file()],
        None,
        labels if all(p.is_file() for p in labels) else None,
    )
