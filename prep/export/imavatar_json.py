"""IMAvatar / HRAvatar ``flame_params.json``: writer from our canonical tracking, and reader.

Layout (FORMATS.md; IMAvatar ``preprocess/DECA/optimize.py`` writes it, its data loader reads it)::

    {"frames": [{"file_path": "./image/<stem>", "world_mat": 3x4, "expression": [n_expr],
                 "pose": [15], "bbox": [xmin, ymin, xmax, ymax], "flame_keypoints": Nx2,
                 "translation": [3], "eyelids": [2]}, ...],
     "intrinsics": [-fx/w, fy/h, cx/w, cy/h], "shape_params": [n_shape]}

Conventions: ``world_mat`` is world-to-camera in OpenGL camera axes with identity rotation, in
IMAvatar's units where FLAME vertices are multiplied by 4; the head rotation is the FLAME global
pose. ``pose`` = [global 3, neck 3, jaw 3, eyes 6] axis-angle. ``bbox`` and ``flame_keypoints``
are normalised to [-1, 1] (``px / size * 2 - 1``). ``translation`` (HRAvatar) is the per-frame
FLAME translation left after the shared camera translation; ``eyelids`` only when the model has
eyelid blendshapes. Our canonical camera (OpenCV, ``x_cam = F (x + transl)``) converts exactly
through `prep.export.cameras.to_imavatar`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.errors import BadInputError
from prep.export.cameras import IMAVATAR_SCALE, imavatar_K, to_imavatar
from prep.io.files import read_json, write_json


@dataclass
class ImavatarParams:
    """A flame_params.json read back (numpy).

    Attributes:
        stems: (T,) frame stems from ``file_path``.
        world_mat: (T, 3, 4). expression: (T, n_expr). pose: (T, 15).
        bbox: (T, 4) normalised. keypoints: (T, N, 2) normalised.
        translation: (T, 3) (zeros when absent). eyelids: (T, 2) or None.
        intrinsics: (4,). shape: (n_shape,).
    """

    stems: list[str]
    world_mat: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    bbox: np.ndarray
    keypoints: np.ndarray
    translation: np.ndarray
    eyelids: np.ndarray | None
    intrinsics: np.ndarray
    shape: np.ndarray

    def K(self, image_size) -> np.ndarray:
        """(3, 3) pixel intrinsics (positive fx) for a crop of ``(h, w)``."""
        return imavatar_K(self.intrinsics, image_size)

    def canonical(self, image_size) -> dict[str, np.ndarray]:
        """Parameters and camera in our canonical convention (see COMMON.md)."""
        T = len(self.stems)
        t_shared = self.world_mat[:, :, 3] / IMAVATAR_SCALE  # OpenGL camera, identity rotation
        w2c = np.tile(np.diag([1.0, -1.0, -1.0, 1.0]), (T, 1, 1))
        return {
            "shape": self.shape,
            "expr": self.expression,
            "global_pose": self.pose[:, 0:3],
            "neck_pose": self.pose[:, 3:6],
            "jaw_pose": self.pose[:, 6:9],
            "eyes_pose": self.pose[:, 9:15],
            "eyelids": self.eyelids if self.eyelids is not None else np.zeros((T, 2)),
            "transl": self.translation + t_shared,
            "w2c": w2c,
            "K": self.K(image_size),
        }


def normalise_px(px: np.ndarray, image_size) -> np.ndarray:
    """Pixels ``(..., 2)`` -> IMAvatar's [-1, 1] coordinates (``px / size * 2 - 1``)."""
    h, w = (float(v) for v in image_size)
    return np.asarray(px, np.float64) / np.array([w, h]) * 2 - 1


def flame_params_dict(
    track: dict,
    keypoints_px: np.ndarray,
    obs_px: np.ndarray,
    obs_w: np.ndarray,
    with_eyelids: bool = False,
) -> dict:
    """Build the json object from canonical tracking arrays.

    Args:
        track: canonical tracking arrays (flame/tracking.npz keys).
        keypoints_px: (T, N, 2) fitted landmarks in crop pixels (``flame_keypoints``).
        obs_px: (T, 68, 2) observed landmarks (for ``bbox``); obs_w: (T, 68) their weights.
        with_eyelids: write ``eyelids`` (models with eyelid blendshapes).
    """
    size = tuple(int(v) for v in track["image_size"])
    root = np.zeros(3)  # the rotation is unchanged (our w2c rotation is the axis flip), so the
    cam = to_imavatar(track["w2c"], track["K"], size, track["global_pose"], track["transl"], root)
    kp = normalise_px(keypoints_px, size)
    ok = (obs_w > 0)[..., None] & np.isfinite(obs_px)
    lo = np.where(ok, obs_px, np.inf).min(1)  # frames without observations fall back below
    hi = np.where(ok, obs_px, -np.inf).max(1)
    fallback = np.stack(
        [kp[..., 0].min(1), kp[..., 1].min(1), kp[..., 0].max(1), kp[..., 1].max(1)], 1
    )
    box = np.concatenate([normalise_px(lo, size), normalise_px(hi, size)], 1)
    box = np.where(np.isfinite(box), box, fallback)
    pose = np.concatenate(
        [cam.global_pose, track["neck_pose"], track["jaw_pose"], track["eyes_pose"]], 1
    )
    frames = []
    for i, name in enumerate(track["frame_names"]):
        fr = {
            "file_path": f"./image/{Path(str(name)).stem}",
            "world_mat": cam.world_mat.tolist(),
            "expression": np.asarray(track["expr"][i], np.float64).tolist(),
            "pose": pose[i].tolist(),
            "bbox": box[i].tolist(),
            "flame_keypoints": kp[i].tolist(),
            "translation": cam.transl[i].tolist(),
        }
        if with_eyelids:
            fr["eyelids"] = np.asarray(track["eyelids"][i], np.float64).tolist()
        frames.append(fr)
    return {
        "frames": frames,
        "intrinsics": cam.intrinsics.tolist(),
        "shape_params": np.asarray(track["shape"], np.float64).tolist(),
    }


def write_flame_params_json(path: Path | str, obj: dict) -> None:
    """Write the json atomically (compact: one line per file, as the tools write it)."""
    write_json(path, obj, indent=None)


def read_flame_params_json(path: Path | str) -> ImavatarParams:
    """Read an IMAvatar/HRAvatar flame_params.json (ours or the public tools')."""
    path = Path(path)
    d = read_json(path)
    for key in ("frames", "intrinsics", "shape_params"):
        if key not in d:
            raise BadInputError(f"{path}: not an IMAvatar flame_params.json (no {key!r})")
    fr = d["frames"]
    if not fr:
        raise BadInputError(f"{path}: no frames")
    T = len(fr)

    def arr(key: str, default=None) -> np.ndarray:
        if key not in fr[0]:
            return default
        return np.asarray([f[key] for f in fr], np.float64)

    pose = arr("pose")
    if pose is None or pose.shape[1] not in (6, 9, 15):
        raise BadInputError(f"{path}: frames need a 'pose' of 6, 9 or 15 values")
    if pose.shape[1] < 15:  # IMAvatar without iris / global pose: pad eyes (and global) with 0
        pose = np.concatenate([pose, np.zeros((T, 15 - pose.shape[1]))], 1)
    return ImavatarParams(
        stems=[Path(f["file_path"]).name for f in fr],
        world_mat=arr("world_mat"),
        expression=arr("expression"),
        pose=pose,
        bbox=arr("bbox", np.zeros((T, 4))),
        keypoints=arr("flame_keypoints", np.zeros((T, 0, 2))),
        translation=arr("translation", np.zeros((T, 3))),
        eyelids=arr("eyelids"),
        intrinsics=np.asarray(d["intrinsics"], np.float64),
        shape=np.asarray(d["shape_params"], np.float64).reshape(-1),
    )
