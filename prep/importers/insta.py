"""Import an INSTA folder (Zielon/INSTA scripts/transforms.py + simplification.py output).

Layout: ``transforms.json`` (fl_x, fl_y, cx, cy with rays through ``i + 0.5``; per frame
``transform_matrix`` camera-to-world in OpenCV axes and ``file_path`` images/<id>.png, RGBA),
``meshes/<id>.obj`` (the tracked FLAME mesh in world space, on INSTA's simplified topology, which
keeps FLAME's 5,023 vertices in FLAME's order: head_idxs is sorted) and ``flame/exp/<id>.txt``.
There are no FLAME shape or pose parameters, so the import gives cameras, images and the meshes;
stage import_tracking turns the meshes into landmarks and irises, and fit_flame fits FLAME.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prep.errors import BadInputError
from prep.export.common import read_obj
from prep.importers import Imported
from prep.io.files import read_json
from prep.models.camera import K_matrix, invert_rigid

INSTA_PIXEL_OFFSET = 0.5  # insta/utils.py get_rays: pixel i is sampled at i + 0.5


def _transforms(folder: Path) -> tuple[dict, list[dict]]:
    path = folder / "transforms.json"
    if not path.is_file():
        raise BadInputError(f"{folder} has no transforms.json (an INSTA folder)")
    tf = read_json(path)
    return tf, sorted(tf["frames"], key=lambda f: f["file_path"])


def frame_files(folder: Path) -> list[Path]:
    """images/<id>.png in id order (INSTA's transforms.py keys frames by id)."""
    return [folder / f["file_path"] for f in _transforms(folder)[1]]


def read(folder: Path) -> Imported:
    """Read an INSTA folder (see the module docstring)."""
    path = folder / "transforms.json"
    tf, frames = _transforms(folder)
    files = [folder / f["file_path"] for f in frames]
    meshes = [
        folder
        / f.get("mesh_path", f["file_path"].replace("images", "meshes").replace(".png", ".obj"))
        for f in frames
    ]
    missing = [str(p) for p in files + meshes if not p.is_file()]
    if missing:
        raise BadInputError(f"INSTA folder {folder}: missing {missing[:3]}")
    T = len(frames)
    c2w = np.asarray([f["transform_matrix"] for f in frames], np.float64)
    fx, fy = float(tf["fl_x"]), float(tf.get("fl_y", tf["fl_x"]))
    cx, cy = float(tf["cx"]) - INSTA_PIXEL_OFFSET, float(tf["cy"]) - INSTA_PIXEL_OFFSET
    K = np.tile(K_matrix(fx, fy, cx, cy), (T, 1, 1))

    def mesh_vertices(idx: np.ndarray) -> np.ndarray:
        return np.stack([read_obj(meshes[int(i)])[0] for i in idx])

    h, w = int(tf["h"]), int(tf["w"])
    notes = [
        f"insta_tracked: no FLAME parameters in an INSTA folder: run stage=fit_flame with "
        f"fx={fx:.3f} fy={fy:.3f} cx={cx:.3f} cy={cy:.3f} (its camera)"
    ]
    canonical = folder / "canonical.obj"
    reference = read_obj(canonical)[0] if canonical.is_file() else None
    return Imported(
        files,
        (h, w),
        True,
        None,
        None,
        invert_rigid(c2w),
        K,
        None,
        None,
        None,
        mesh_vertices,
        notes,
        [path],
        reference,
    )
