"""IMAvatar ``flame_params.json`` and HRAvatar ``tracked_params.json``: writers and readers.

``flame_params.json`` (IMAvatar ``preprocess/DECA/optimize.py`` writes it, ``code/datasets/
real_dataset.py`` reads it)::

    {"frames": [{"file_path": "./image/<stem>", "world_mat": 3x4, "expression": [n_expr],
                 "pose": [15], "bbox": [xmin, ymin, xmax, ymax], "flame_keypoints": Nx2}, ...],
     "intrinsics": [-fx/w, fy/h, cx/w, cy/h], "shape_params": [n_shape]}

IMAvatar reads per frame only ``world_mat, expression, pose, file_path, bbox`` (real_dataset.py
lines 83-97) and builds each frame's camera from its own ``world_mat`` (train.py:148), so the head
motion relative to the shared camera goes into a per-frame ``[I | t]`` (x4 units); no
``translation`` key is written here.

``tracked_params.json`` (HRAvatar ``preprocess/submodules/DECA/optimize.py`` lines 403-427 writes
it, ``scene/data_loader.py`` lines 93-160 reads it): top-level ``world_mat`` (4x4), ``intrinsics``
``[fx, fy, cx, cy]`` in pixels, ``shapecode`` [[n_shape]], and per image file name
``expcode`` [[n]], ``fullposecode`` [[15]], ``world_mat`` 4x4, ``translation`` [[3]] (added to the
posed FLAME before the x4 scale), optional ``eyelids`` [[2]]. HRAvatar derives its field of view
from ``cx`` (line 152) and renders with a centred principal point (257-258), so callers pass a
camera re-cropped by `prep.export.cameras.resample_maps(centre=True)`.

Conventions: ``world_mat`` is world-to-camera in OpenGL camera axes with identity rotation, in
IMAvatar's units where FLAME vertices are multiplied by 4; the head rotation is the FLAME global
pose; ``pose`` = [global 3, neck 3, jaw 3, eyes 6] axis-angle; ``bbox`` and ``flame_keypoints``
are normalised to [-1, 1] (``px / size * 2 - 1``). Our canonical camera (OpenCV,
``x_cam = w2c (x + transl)``) converts exactly through `prep.export.cameras.to_imavatar`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.errors import BadInputError
from prep.export.cameras import IMAVATAR_SCALE, imavatar_K, to_imavatar
from prep.io.files import read_json, write_json
from prep.models.camera import OPENGL_FROM_OPENCV

IMAVATAR_N_SHAPE, IMAVATAR_N_EXPR = 100, 50  # code/model/implicit_morphable_model.py:27, conf
HRAVATAR_N_SHAPE, HRAVATAR_N_EXPR = 100, 50  # arguments/__init__.py:56 (the trainer's defaults)


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
        """Parameters and camera in our canonical convention (``x_cv = F (v + transl)``)."""
        T = len(self.stems)
        t_shared = self.world_mat[:, :, 3] / IMAVATAR_SCALE  # OpenGL camera, identity rotation
        w2c = np.tile(OPENGL_FROM_OPENCV, (T, 1, 1))
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


def fit_width(a: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or cut the last axis to `n` values (float64)."""
    a = np.asarray(a, np.float64)
    out = np.zeros(a.shape[:-1] + (n,))
    k = min(n, a.shape[-1])
    out[..., :k] = a[..., :k]
    return out


def _bbox(keypoints_norm: np.ndarray, obs_px: np.ndarray, obs_w: np.ndarray, size) -> np.ndarray:
    """(T, 4) normalised box of the observed landmarks (of the keypoints where none is seen)."""
    kp = keypoints_norm
    ok = (obs_w > 0)[..., None] & np.isfinite(obs_px)
    lo = np.where(ok, obs_px, np.inf).min(1)
    hi = np.where(ok, obs_px, -np.inf).max(1)
    fallback = np.stack(
        [kp[..., 0].min(1), kp[..., 1].min(1), kp[..., 0].max(1), kp[..., 1].max(1)], 1
    )
    box = np.concatenate([normalise_px(lo, size), normalise_px(hi, size)], 1)
    return np.where(np.isfinite(box), box, fallback)


def flame_params_dict(
    track: dict,
    keypoints_px: np.ndarray,
    obs_px: np.ndarray,
    obs_w: np.ndarray,
    with_eyelids: bool = False,
    *,
    root_joint: np.ndarray | None = None,
    stems: list[str] | None = None,
    n_shape: int | None = None,
    n_expr: int | None = None,
) -> dict:
    """Build the flame_params.json object from canonical tracking arrays.

    Args:
        track: canonical tracking arrays (flame/tracking.npz keys; ``K`` one (3,3) camera).
        keypoints_px: (T, N, 2) landmarks in crop pixels (``flame_keypoints``).
        obs_px: (T, 68, 2) observed landmarks (for ``bbox``); obs_w: (T, 68) their weights.
        with_eyelids: write ``eyelids`` (models with eyelid blendshapes).
        root_joint: (T,3) FLAME root joint, needed only when ``w2c`` rotates (imports).
        stems: file stems per frame (default: the tracking frame names).
        n_shape, n_expr: coefficient counts to write (default: the fit's).
    """
    size = tuple(int(v) for v in track["image_size"])
    root = np.zeros(3) if root_joint is None else root_joint
    cam = to_imavatar(track["w2c"], track["K"], size, track["global_pose"], track["transl"], root)
    kp = normalise_px(keypoints_px, size)
    box = _bbox(kp, obs_px, obs_w, size)
    pose = np.concatenate(
        [cam.global_pose, track["neck_pose"], track["jaw_pose"], track["eyes_pose"]], 1
    )
    expr = fit_width(track["expr"], n_expr or np.shape(track["expr"])[1])
    shape = fit_width(track["shape"], n_shape or np.shape(track["shape"])[0])
    stems = stems or [Path(str(n)).stem for n in track["frame_names"]]
    mats = cam.world_mats()
    frames = []
    for i, stem in enumerate(stems):
        fr = {
            "file_path": f"./image/{stem}",
            "world_mat": mats[i].tolist(),
            "expression": expr[i].tolist(),
            "pose": pose[i].tolist(),
            "bbox": box[i].tolist(),
            "flame_keypoints": kp[i].tolist(),
        }
        if with_eyelids:
            fr["eyelids"] = np.asarray(track["eyelids"][i], np.float64).tolist()
        frames.append(fr)
    return {"frames": frames, "intrinsics": cam.intrinsics.tolist(), "shape_params": shape.tolist()}


def tracked_params_dict(
    track: dict, names: list[str], with_eyelids: bool, root_joint=None, n_shape=None, n_expr=None
) -> dict:
    """HRAvatar's tracked_params.json (FLAME x4) from canonical tracking arrays.

    Args:
        track: canonical tracking arrays; ``K`` must be centred with ``fx = fy`` (the images
            were re-cropped so), since HRAvatar reads only the field of view ``2 atan(cx / fx)``.
        names: image file names (with suffix) per frame: the keys HRAvatar looks up.
        with_eyelids: write ``eyelids`` (models with eyelid blendshapes).
        root_joint, n_shape, n_expr: as in `flame_params_dict`.
    """
    size = tuple(int(v) for v in track["image_size"])
    root = np.zeros(3) if root_joint is None else root_joint
    cam = to_imavatar(track["w2c"], track["K"], size, track["global_pose"], track["transl"], root)
    h, w = size
    fx, fy = float(track["K"][0, 0]), float(track["K"][1, 1])
    world_mat = np.concatenate([cam.world_mat, [[0.0, 0.0, 0.0, 1.0]]]).tolist()
    pose = np.concatenate(
        [cam.global_pose, track["neck_pose"], track["jaw_pose"], track["eyes_pose"]], 1
    )
    expr = fit_width(track["expr"], n_expr or HRAVATAR_N_EXPR)
    shape = fit_width(track["shape"], n_shape or HRAVATAR_N_SHAPE)
    # cx = w / 2: HRAvatar's field of view 2 atan(cx / fx) then gives back exactly fx for an image
    # of width w, and its renderer's axis passes through pixel (w - 1) / 2 of our convention.
    out: dict = {
        "world_mat": world_mat,
        "intrinsics": [fx, fy, w / 2.0, h / 2.0],
        "shapecode": [shape.tolist()],
    }
    for i, name in enumerate(names):
        entry = {
            "expcode": [expr[i].tolist()],
            "fullposecode": [pose[i].tolist()],
            "world_mat": world_mat,
            "translation": [cam.transl[i].tolist()],
        }
        if with_eyelids:
            entry["eyelids"] = [np.asarray(track["eyelids"][i], np.float64).tolist()]
        out[name] = entry
    return out


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
        world_mat=arr("world_mat")[:, :3],
        expression=arr("expression"),
        pose=pose,
        bbox=arr("bbox", np.zeros((T, 4))),
        keypoints=arr("flame_keypoints", np.zeros((T, 0, 2))),
        translation=arr("translation", np.zeros((T, 3))).reshape(T, 3),
        eyelids=arr("eyelids"),
        intrinsics=np.asarray(d["intrinsics"], np.float64),
        shape=np.asarray(d["shape_params"], np.float64).reshape(-1),
    )
