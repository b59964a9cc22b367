"""IMAvatar / HRAvatar / SplattingAvatar exporter and reader.

Layout written under ``export/imavatar/`` (link it as ``<subject>/<seq>`` for the trainers)::

    image/<k>.png      RGB over the configured background
    mask/<k>.png       uint8 foreground mask
    semantic/<k>.png   BiSeNet-convention labels (when parsing ran and imavatar_semantic=true)
    flame_params.json  fit_flame's IMAvatar json, frames filtered and renamed to the new numbering

Numbering: IMAvatar counts from 1 without padding (``1.png``); HRAvatar counts from 0 with five
digits (``00000.png``). ``file_path`` entries are ``./image/<k>`` (no suffix, as IMAvatar appends
``.png``). Cameras follow `prep.export.cameras.to_imavatar` (identity rotation, FLAME x4, fx
stored negated); fit_flame writes them and this exporter re-numbers and filters frames. Without
fit_flame's json, `prep.export.imavatar_params` builds it from flame/tracking.npz.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.errors import BadConfigError, BadInputError, MissingInputError
from prep.export.cameras import imavatar_K
from prep.export.common import (
    Tracking,
    composite,
    frame_index,
    load_mask,
    load_rgba,
    load_tracking,
    selected_frames,
    write_if_needed,
)
from prep.io.files import read_image, read_json, write_json
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
    raise BadConfigError(f"export.imavatar_target={target!r}; use imavatar or hravatar")


def export_imavatar(
    subject: SubjectDir,
    cfg: ExportConfig,
    out: Path,
    force: bool,
    root_joint_fn: Callable[[Tracking], np.ndarray] | None = None,
) -> int:
    """Write the IMAvatar/HRAvatar folder; returns the number of frames exported.

    Args:
        root_joint_fn: FLAME root joint (3,) of the tracked shape; used to build
            flame_params.json from flame/tracking.npz when fit_flame left none.
    """
    track = load_tracking(subject)
    idx = selected_frames(track, cfg.only_valid)
    if subject.flame_params_json.exists() or root_joint_fn is None:
        params = _load_params(subject)
    else:
        from prep.export.imavatar_params import params_from_tracking

        hravatar = cfg.imavatar_target == "hravatar"
        params = params_from_tracking(subject, track, root_joint_fn(track), hravatar)
    by_index = {frame_index(Path(f["file_path"]).name): f for f in params["frames"]}
    semantic = cfg.imavatar_semantic and subject.parsing_dir.is_dir()
    frames = []
    for j, i in enumerate(progress(idx, total=len(idx), desc="export imavatar")):
        src = by_index.get(int(i))
        if src is None:
            raise BadInputError(f"{subject.flame_params_json} has no entry for frame {i}")
        name = target_name(j, cfg.imavatar_target)
        _write_frame(subject, int(i), out, name, cfg, semantic, force)
        frames.append({**src, "file_path": f"./image/{name}"})
    write_json(out / "flame_params.json", {**params, "frames": frames})
    return len(idx)


def _load_params(subject: SubjectDir) -> dict:
    path = subject.flame_params_json
    if not path.exists():
        raise MissingInputError("fit_flame", path, f"imavatar export needs {path}")
    params = read_json(path)
    for key in ("frames", "intrinsics", "shape_params"):
        if key not in params:
            raise BadInputError(f"{path} lacks {key!r}; re-run stage=fit_flame")
    return params


def _write_frame(subject, i, out, name, cfg, semantic, force) -> None:
    rgba = load_rgba(subject, i)
    mask = load_mask(subject, i)
    if mask is None:
        mask = rgba[..., 3]
    labels = read_image(subject.parsing_path(i), "gray") if semantic else None
    if cfg.remove_cloth and labels is not None:
        mask = np.where(labels == CLOTH_LABEL, 0, mask).astype(np.uint8)
        rgba = rgba.copy()
        rgba[..., 3] = np.minimum(rgba[..., 3], mask)
    write_if_needed(out / "image" / f"{name}.png", composite(rgba, tuple(cfg.background)), force)
    write_if_needed(out / "mask" / f"{name}.png", mask, force)
    if labels is not None:
        write_if_needed(out / "semantic" / f"{name}.png", labels, force)


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
