"""AD-NeRF exporter and reader (the BFM path: bfm/fine.npz from fit_3dmm_fine).

Layout under ``export/nerf/``::

    ori_imgs/<i>.jpg         the frames the BFM tracker fitted (crop frames when present)
    track_params.npz         euler (N,3), trans (N,3), focal: the tracker's own values
    transforms_train.json    {focal_len, cx, cy, frames: [{img_id, aud_id, transform_matrix}]}
    transforms_val.json      the last `nerf_val_fraction` of the frames

``transform_matrix`` is AD-NeRF's camera-to-world (OpenGL axes) of ``[R | trans / 10]`` with R from
its Euler convention (see `prep.export.cameras`); cx, cy are the image centre as AD-NeRF writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.errors import BadInputError, MissingInputError
from prep.export.cameras import adnerf_from_poses, adnerf_poses
from prep.io.files import load_npz, read_image, read_json, save_npz, write_bytes, write_json
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


def _source_frame(subject: SubjectDir, i: int) -> Path:
    crop = subject.crop_frame_path(i)
    return crop if crop.exists() else subject.frame_path(i)


def export_nerf(subject: SubjectDir, cfg: ExportConfig, out: Path, force: bool) -> int:
    """Write the AD-NeRF transforms; returns the number of frames exported."""
    path = subject.bfm_fine
    if not path.exists():
        raise MissingInputError("fit_3dmm_fine", path, f"nerf export needs BFM tracking {path}")
    z = load_npz(path)
    for key in ("euler", "trans", "focal"):
        if key not in z:
            raise BadInputError(f"{path} lacks {key!r}; re-run stage=fit_3dmm_fine")
    euler, trans = z["euler"].astype(np.float64), z["trans"].astype(np.float64)
    focal = float(np.asarray(z["focal"]).reshape(-1)[0])
    n = len(euler)
    valid = z["valid"].astype(bool) if "valid" in z else np.ones(n, bool)
    idx = np.flatnonzero(valid) if cfg.only_valid else np.arange(n)
    if len(idx) == 0:
        raise BadInputError(f"{path}: no valid frame to export")
    for i in progress(idx, total=len(idx), desc="export nerf"):
        dst = out / "ori_imgs" / f"{i}.jpg"
        if force or not dst.exists():
            src = _source_frame(subject, int(i))
            if not src.exists():
                raise MissingInputError("crop", src, f"nerf export needs frame {src}")
            write_bytes(dst, src.read_bytes()) if src.suffix == ".jpg" else _to_jpg(src, dst)
    if "image_size" in z:
        h, w = (int(v) for v in z["image_size"])
    else:
        h, w = read_image(_source_frame(subject, int(idx[0]))).shape[:2]
    poses = adnerf_poses(euler, trans)
    save_npz(out / "track_params.npz", euler=euler, trans=trans, focal=np.float64(focal))
    n_val = max(1, int(round(cfg.nerf_val_fraction * len(idx)))) if len(idx) > 1 else 0
    parts = {"train": idx[: len(idx) - n_val], "val": idx[len(idx) - n_val :] if n_val else idx}
    for name, sel in parts.items():
        frames = [
            {"img_id": int(i), "aud_id": int(i), "transform_matrix": poses[i].tolist()} for i in sel
        ]
        doc = {"focal_len": focal, "cx": w / 2.0, "cy": h / 2.0, "frames": frames}
        write_json(out / f"transforms_{name}.json", doc)
    return len(idx)


def _to_jpg(src: Path, dst: Path) -> None:
    from prep.io.files import write_image

    write_image(dst, read_image(src))


@dataclass
class NerfExport:
    """An AD-NeRF folder read back (train then val frames, in file order)."""

    root: Path
    focal: float
    cx: float
    cy: float
    img_ids: np.ndarray  # (N,)
    c2w: np.ndarray  # (N,4,4) OpenGL
    euler: np.ndarray  # (N,3) recovered from the poses
    trans: np.ndarray  # (N,3) tracker units (x10 the pose translation)
    split: list[str]  # per frame: "train" or "val"


def read_nerf(root: Path | str) -> NerfExport:
    """Read transforms_{train,val}.json of an AD-NeRF folder."""
    root = Path(root)
    docs = {s: read_json(root / f"transforms_{s}.json") for s in ("train", "val")}
    frames = [(s, f) for s in ("train", "val") for f in docs[s]["frames"]]
    c2w = np.asarray([f["transform_matrix"] for _, f in frames], np.float64)
    euler, trans = adnerf_from_poses(c2w)
    d = docs["train"]
    return NerfExport(
        root, float(d["focal_len"]), float(d["cx"]), float(d["cy"]),
        np.asarray([f["img_id"] for _, f in frames]), c2w, euler, trans, [s for s, _ in frames],
    )  # fmt: skip
