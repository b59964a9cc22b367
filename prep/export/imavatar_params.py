"""Build IMAvatar/HRAvatar ``flame_params.json`` content from the canonical tracking file.

Used by the imavatar exporter when fit_flame left no ``flame/flame_params.json``. The camera goes
through `prep.export.cameras.to_imavatar`: per-frame camera rotation folded into the FLAME global
pose, one shared identity-rotation ``world_mat`` (x4 units), negated normalised fx.

- ``flame_keypoints``: the 68 landmarks then the irises in the order ``iris[[1, 0]]`` (subject's
  right, then left: what IMAvatar's fitter appends), normalised as ``p / size * 2 - 1``.
- ``bbox``: min/max of the 68 landmarks, normalised the same way.
- HRAvatar also gets ``translation`` (the per-frame residual of `to_imavatar`, FLAME units: our
  assumption is that it is added to the posed FLAME mesh before the x4 scale) and ``eyelids``.
  IMAvatar has no per-frame translation; when the residual exceeds 1 mm a warning says so.
"""

from __future__ import annotations

import logging

import numpy as np

from prep.export.cameras import to_imavatar
from prep.export.common import Tracking
from prep.io.files import load_npz
from prep.subject import SubjectDir, frame_stem

log = logging.getLogger(__name__)

TRANSL_WARN_M = 1e-3


def keypoints_norm(subject: SubjectDir, n_frames: int, image_size) -> np.ndarray:
    """(T,70,2) landmarks + irises in [-1,1] (zeros where the files are missing)."""
    h, w = (float(v) for v in image_size)
    kps = np.zeros((n_frames, 70, 2))
    if subject.landmarks_npz.exists():
        kps[:, :68] = load_npz(subject.landmarks_npz)["points_px"][:n_frames]
    else:
        log.warning("no %s: flame_keypoints are written as zeros", subject.landmarks_npz)
    if subject.iris_npz.exists():
        kps[:, 68:] = load_npz(subject.iris_npz)["iris_px"][:n_frames][:, [1, 0]]
    kps = np.nan_to_num(kps)
    return kps / np.array([w, h]) * 2.0 - 1.0


def params_from_tracking(
    subject: SubjectDir, track: Tracking, root_joint: np.ndarray, hravatar: bool
) -> dict:
    """flame_params.json content for every tracked frame (file_path ``./image/<frame stem>``)."""
    cam = to_imavatar(track.w2c, track.K, track.image_size, track.global_pose.astype(np.float64),
                      track.transl.astype(np.float64), root_joint)  # fmt: skip
    resid = np.abs(cam.transl[track.valid]).max() if track.valid.any() else 0.0
    if not hravatar and resid > TRANSL_WARN_M:
        log.warning("IMAvatar has no per-frame translation: frames move up to %.1f mm from the "
                    "shared camera (use export.imavatar_target=hravatar)", resid * 1e3)  # fmt: skip
    kps = keypoints_norm(subject, track.n_frames, track.image_size)
    pose = np.concatenate([cam.global_pose, track.neck_pose, track.jaw_pose, track.eyes_pose], 1)
    frames = []
    for i in range(track.n_frames):
        f = {
            "file_path": f"./image/{frame_stem(i)}",
            "world_mat": cam.world_mat.tolist(),
            "expression": track.expr[i].tolist(),
            "pose": pose[i].tolist(),
            "bbox": [*kps[i, :68].min(0).tolist(), *kps[i, :68].max(0).tolist()],
            "flame_keypoints": kps[i].tolist(),
        }
        if hravatar:
            f["translation"] = cam.transl[i].tolist()
            f["eyelids"] = track.eyelids[i].tolist()
        frames.append(f)
    return {"frames": frames, "intrinsics": cam.intrinsics.tolist(),
            "shape_params": track.shape.tolist()}  # fmt: skip
