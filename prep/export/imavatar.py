"""IMAvatar / HRAvatar / SplattingAvatar exporter and reader.

Layout written under ``export/imavatar/`` (link it as ``<subject>/<seq>`` for IMAvatar) or
``export/hravatar/`` (HRAvatar takes the folder itself as ``--source_path``)::

    image/<k>.png        IMAvatar: RGB over ``export.background`` (real_dataset.py loads 3
                         channels); HRAvatar: RGBA (its own crop_and_matting.py writes RGBA and
                         data_loader.py:193 takes the mask from the alpha channel)
    mask/<k>.png         IMAvatar: uint8 grey (rend_util.load_mask, as_gray); HRAvatar: 3 channels
                         (data_loader.py:199 averages axis 2 when it reads mask/)
    semantic/<k>.png     BiSeNet-convention labels (parsing ran and imavatar_semantic=true)
    flame_params.json    IMAvatar's json, one world_mat per frame (`prep.export.imavatar_json`)
    tracked_params.json  HRAvatar only: its trainer's json (FLAME x4)
    keypoint.json, iris.json   the detections of every exported frame, exported pixels
    prep_export.json     FLAME version, coefficient counts, notes

Numbering: IMAvatar counts from 1 without padding (``1.png``; real_dataset.py:95 parses the stem
as an int); HRAvatar from 0 with five digits. HRAvatar ignores ``cx, cy`` (it derives its field
of view from cx and renders a symmetric frustum), so for it every frame is re-cropped around the
principal point (`prep.export.cameras.resample_maps`); IMAvatar reads them and keeps the crop
unless the crop moves (one camera for all frames). Everything is built from flame/tracking.npz.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.errors import BadConfigError, BadInputError
from prep.export.cameras import imavatar_K, resample_maps
from prep.export.common import composite, selected_frames
from prep.export.common import write_if_needed as write_img
from prep.export.frames import ExportFrames
from prep.export.imavatar_json import (
    HRAVATAR_N_EXPR,
    HRAVATAR_N_SHAPE,
    IMAVATAR_N_EXPR,
    IMAVATAR_N_SHAPE,
    flame_params_dict,
    tracked_params_dict,
    write_flame_params_json,
)
from prep.export.info import coefficient_notes, model_notes, write_export_info
from prep.io.files import load_npz, read_image, read_json, write_json
from prep.models.camera import CV_TO_GL
from prep.models.flame_tracking import FLAME_PARAMS, Tracking, load_tracking
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

CLOTH_LABEL = 16  # BiSeNet "cloth"


def target_name(j: int, target: str) -> str:
    """Stem of the j-th exported frame (0-based j) for `target`."""
    if target == "imavatar":
        return str(j + 1)
    if target == "hravatar":
        return f"{j:05d}"
    raise BadConfigError(f"unknown IMAvatar-style target {target!r}; use imavatar or hravatar")


def _root_joint(track: Tracking, fn) -> np.ndarray:
    """(T,3) FLAME root joint: the rotation centre matters only when w2c rotates (imports)."""
    if np.allclose(track.w2c[:, :3, :3], CV_TO_GL, atol=1e-9):
        return np.zeros((track.n_frames, 3))
    if fn is None:
        raise BadInputError("the tracked camera rotates: the IMAvatar export needs the FLAME model")
    return np.asarray(fn(track), np.float64)


def export_imavatar(
    subject: SubjectDir,
    cfg: ExportConfig,
    out: Path,
    force: bool,
    root_joint_fn: Callable[[Tracking], np.ndarray] | None = None,
    target: str = "imavatar",
) -> int:
    """Write the IMAvatar or HRAvatar folder; returns the number of frames exported.

    Args:
        root_joint_fn: (T,3) FLAME root joint of the tracked frames; called only when the
            tracked camera rotates (imported trackings), to fold it into the FLAME pose.
        target: imavatar | hravatar.
    """
    track = load_tracking(subject)
    idx = selected_frames(track, cfg.only_valid)
    hr = target == "hravatar"
    names = [target_name(j, target) for j in range(len(idx))]
    size = tuple(int(v) for v in track.image_size)
    D_sel, K_out = resample_maps(track.K_frames[idx], size, centre=hr)
    D = np.tile(np.eye(3), (track.n_frames, 1, 1))
    D[idx] = D_sel
    frames = ExportFrames(subject, D, size)
    arrays = _arrays(track, idx, K_out[0])
    root = _root_joint(track, root_joint_fn)[idx]
    obs, obs_w, iris = _observations(subject, track.n_frames, frames, idx)
    kp = np.concatenate([obs, iris[:, [1, 0]]], 1)  # IMAvatar's fitter appends iris[[1, 0]]
    params = flame_params_dict(
        arrays,
        np.nan_to_num(kp),
        obs,
        obs_w,
        root_joint=root,
        stems=names,
        n_shape=IMAVATAR_N_SHAPE,
        n_expr=IMAVATAR_N_EXPR,
    )
    semantic = cfg.imavatar_semantic and subject.parsing_dir.is_dir()
    for j, i in enumerate(progress(idx, total=len(idx), desc=f"export {target}")):
        _write_frame(frames, int(i), out, names[j], cfg, semantic, hr, force)
    write_flame_params_json(out / "flame_params.json", {**params, "flame_model": track.model})
    _write_detections(out, names, obs, obs_w, iris)
    notes = model_notes("hravatar" if hr else "imavatar", track.model)
    n_sh, n_ex = (HRAVATAR_N_SHAPE, HRAVATAR_N_EXPR) if hr else (IMAVATAR_N_SHAPE, IMAVATAR_N_EXPR)
    notes += coefficient_notes(target, "shape", track.shape, n_sh)
    notes += coefficient_notes(target, "expression", track.expr[idx], n_ex)
    if hr:
        obj = tracked_params_dict(
            arrays, [f"{n}.png" for n in names], _has_eyelids(track), root_joint=root
        )
        write_json(out / "tracked_params.json", {**obj, "flame_model": track.model}, indent=None)
    elif np.any(np.abs(track.eyelids[idx]) > 1e-6):
        notes.append("imavatar: IMAvatar's FLAME has no eyelid blendshapes: the fit's are dropped")
    write_export_info(
        out,
        target,
        track.model,
        notes,
        n_frames=len(idx),
        n_shape=n_sh,
        n_expr=n_ex,
        K=K_out[0].tolist(),
        image_size=list(size),
        recropped=not frames.identity,
    )
    return len(idx)


def _has_eyelids(track: Tracking) -> bool:
    return bool(np.any(np.abs(track.eyelids) > 1e-9))


def _arrays(track: Tracking, idx: np.ndarray, K: np.ndarray) -> dict:
    """Canonical arrays of the exported frames with the exported camera."""
    keys = (*FLAME_PARAMS, "w2c", "frame_names")
    out = {k: getattr(track, k) if k == "shape" else getattr(track, k)[idx] for k in keys}
    out["global_pose"] = out["global_pose"].astype(np.float64)
    out["transl"] = out["transl"].astype(np.float64)
    return {**out, "K": K, "image_size": track.image_size}


def _observations(subject: SubjectDir, T: int, frames: ExportFrames, idx: np.ndarray):
    """Observed landmarks (n,68,2), weights (n,68) and irises (n,2,2) [left, right], exported px."""
    obs = np.full((T, 68, 2), np.nan)
    obs_w = np.zeros((T, 68))
    iris = np.full((T, 2, 2), np.nan)
    if subject.landmarks_npz.exists():
        lm = load_npz(subject.landmarks_npz)
        obs[: len(lm["points_px"])] = lm["points_px"][:T]
        obs_w = np.isfinite(obs).all(-1).astype(np.float64)
    else:
        log.warning("no %s: bbox and flame_keypoints fall back to zeros", subject.landmarks_npz)
    if subject.iris_npz.exists():
        iris[:] = load_npz(subject.iris_npz)["iris_px"][:T]
    obs = np.stack([frames.points(int(i), obs[i]) for i in idx])
    iris = np.stack([frames.points(int(i), iris[i]) for i in idx])
    return obs, obs_w[idx], iris


def _write_detections(out: Path, names, obs, obs_w, iris) -> None:
    """keypoint.json / iris.json as IMAvatar's preprocessing leaves them, for every frame seen."""
    seen = obs_w.sum(1) > 0
    kp = {f"{n}.png": np.round(obs[j], 3).tolist() for j, n in enumerate(names) if seen[j]}
    write_json(out / "keypoint.json", kp, indent=None)
    ok = np.isfinite(iris).all((1, 2))
    rows = {
        f"{n}.png": np.round(iris[j].reshape(4), 3).tolist() for j, n in enumerate(names) if ok[j]
    }
    write_json(out / "iris.json", rows, indent=None)


def _write_frame(frames: ExportFrames, i, out, name, cfg, semantic, hravatar, force) -> None:
    image_path = out / "image" / f"{name}.png"
    if image_path.exists() and not force:
        return
    rgba = frames.rgba(i)
    mask = frames.mask(i, rgba)
    labels = frames.labels(i) if semantic else None
    if cfg.remove_cloth and labels is not None:
        mask = np.where(labels == CLOTH_LABEL, 0, mask).astype(np.uint8)
        rgba = rgba.copy()
        rgba[..., 3] = np.minimum(rgba[..., 3], mask)
    if hravatar:
        write_img(out / "mask" / f"{name}.png", np.repeat(mask[..., None], 3, 2), force)
    else:
        write_img(out / "mask" / f"{name}.png", mask, force)
    if labels is not None:
        write_img(out / "semantic" / f"{name}.png", labels, force)
    img = rgba if hravatar else composite(rgba, tuple(cfg.background))
    write_img(image_path, img, force)  # last: its presence marks the frame done


@dataclass
class ImavatarExport:
    """An IMAvatar folder read back.

    Attributes:
        root: the folder.
        names: (T,) frame stems in file order.
        K: (3,3) pixel intrinsics (positive fx) recovered from the normalised intrinsics.
        world_mats: (T,3,4) per-frame world_mat.
        expression: (T, n_expr); pose: (T, 15).
        params: the whole flame_params.json.
    """

    root: Path
    names: list[str]
    K: np.ndarray
    world_mats: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    params: dict

    def image(self, k: int) -> np.ndarray:
        return read_image(self.root / "image" / f"{self.names[k]}.png")

    def mask(self, k: int) -> np.ndarray:
        return read_image(self.root / "mask" / f"{self.names[k]}.png", "gray")


def read_imavatar(root: Path | str) -> ImavatarExport:
    """Read an IMAvatar/HRAvatar folder (ours or the public preprocessing's)."""
    root = Path(root)
    params = read_json(root / "flame_params.json")
    names = [Path(f["file_path"]).name for f in params["frames"]]
    first = read_image(root / "image" / f"{names[0]}.png")
    size = first.shape[:2]
    return ImavatarExport(
        root=root,
        names=names,
        K=imavatar_K(np.asarray(params["intrinsics"], np.float64), size),
        world_mats=np.asarray([f["world_mat"] for f in params["frames"]], np.float64),
        expression=np.asarray([f["expression"] for f in params["frames"]], np.float64),
        pose=np.asarray([f["pose"] for f in params["frames"]], np.float64),
        params=params,
    )
