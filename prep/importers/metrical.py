"""Import a metrical-tracker output folder (Zielon/metrical-tracker, tracker.py save_checkpoint).

Layout: ``checkpoint/<frame_id>.frame`` (``torch.save`` of a dict of numpy arrays: ``flame``
{exp (1,100), shape (1,300), eyes (1,12): two 6D rotations, jaw (1,6): 6D, eyelids (1,2), tex,
sh}, ``camera`` {R (6D), t, fl, pp}, ``opencv`` {R (1,3,3), t (1,3), K (1,3,3)}, ``img_size``
[h, w], ``frame_id``) and ``input/<frame_id>.png`` (the images it tracked).

metrical-tracker keeps FLAME at the origin without global rotation or translation; the head
moves in the camera: ``x_cv = R v + t`` with pytorch3d's ``opencv_from_cameras_projection``,
whose ``K`` puts pixel centres at ``x + 0.5`` (principal point ``w / 2`` for a centred camera;
INSTA's rays use the same, provider.py ``i + 0.5``). 6D rotations are pytorch3d's: the first two
rows of the matrix. Eyelid blendshapes are added after skinning there and before it in our FLAME
layer; with no global or neck rotation (metrical-tracker has none) both agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from prep.datasets.base import natural_key
from prep.errors import BadInputError
from prep.importers import Imported

PYTORCH3D_PIXEL_OFFSET = 0.5  # opencv_from_cameras_projection: principal point at w / 2


def rotation_6d_to_axis_angle(d6: np.ndarray) -> np.ndarray:
    """(..., 6) pytorch3d 6D rotations (Gram-Schmidt of two rows) -> (..., 3) axis-angle."""
    d6 = np.asarray(d6, np.float64)
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=-1, keepdims=True)
    R = np.stack([b1, b2, np.cross(b1, b2)], -2)
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(d6.shape[:-1] + (3,))


def load_frame(path: Path) -> dict:
    """One .frame checkpoint (a pickled dict of numpy arrays; torch.load with numpy allowed)."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: one line, naming it
        raise BadInputError(f"cannot read metrical-tracker checkpoint {path}: {e}") from e


def _numpy_globals() -> list:
    # private, but the pickled arrays name it, so the allow-list must hold it
    from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined]

    kinds = [np.ndarray, np.dtype, _reconstruct]
    kinds += [type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "u1", "b1", "<U1", "O")]
    return kinds


def _checkpoints(folder: Path) -> list[Path]:
    ckpts = sorted((folder / "checkpoint").glob("*.frame"), key=lambda p: natural_key(p.name))
    if not ckpts:
        raise BadInputError(f"{folder}/checkpoint has no .frame files (metrical-tracker output)")
    return ckpts


def frame_files(folder: Path) -> list[Path]:
    """``input/<frame_id>.png`` of every checkpoint (tracker.py writes both under frame_id)."""
    files = []
    for p in _checkpoints(folder):
        img = next(
            (
                folder / "input" / f"{p.stem}{ext}"
                for ext in (".png", ".jpg")
                if (folder / "input" / f"{p.stem}{ext}").is_file()
            ),
            None,
        )
        if img is None:
            raise BadInputError(f"{folder}/input has no image for frame {p.stem}")
        files.append(img)
    return files


def read(folder: Path) -> Imported:
    """Read a metrical-tracker actor output folder (see the module docstring)."""
    ckpts = _checkpoints(folder)
    rows = [load_frame(p) for p in ckpts]
    files = frame_files(folder)
    T = len(rows)
    flame = [r["flame"] for r in rows]
    cv = [r["opencv"] for r in rows]
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, :3, :3] = np.stack([np.reshape(c["R"], (3, 3)) for c in cv])
    w2c[:, :3, 3] = np.stack([np.reshape(c["t"], 3) for c in cv])
    K = np.stack([np.reshape(c["K"], (3, 3)).astype(np.float64) for c in cv])
    K[:, :2, 2] -= PYTORCH3D_PIXEL_OFFSET
    eyes = np.stack([np.reshape(f["eyes"], 12) for f in flame])
    z3 = np.zeros((T, 3))
    params = {
        "shape": np.reshape(flame[0]["shape"], -1).astype(np.float64),
        "expr": np.stack([np.reshape(f["exp"], -1) for f in flame]).astype(np.float64),
        "global_pose": z3,
        "neck_pose": z3.copy(),
        "transl": z3.copy(),
        "jaw_pose": rotation_6d_to_axis_angle(np.stack([np.reshape(f["jaw"], 6) for f in flame])),
        "eyes_pose": np.concatenate(
            [rotation_6d_to_axis_angle(eyes[:, :6]), rotation_6d_to_axis_angle(eyes[:, 6:])], 1
        ),
        "eyelids": np.stack([np.reshape(f.get("eyelids", np.zeros(2)), 2) for f in flame]),
    }
    h, w = (int(v) for v in np.reshape(rows[0]["img_size"], -1)[:2])
    notes = ["metrical: its FLAME is FLAME 2020 (configs/config.py flame_geom_path)"]
    return Imported(
        files,
        (h, w),
        False,
        None,
        params,
        w2c,
        K,
        "flame2020",
        None,
        None,
        None,
        notes,
        list(ckpts),
    )
