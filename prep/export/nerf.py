"""AD-NeRF exporter and reader (the BFM path: bfm/fine.npz from fit_3dmm_fine).

Layout under ``export/nerf/`` (what AD-NeRF's data_util/process_data.py leaves and
NeRFs/HeadNeRF/load_audface.py, NeRFs/TorsoNeRF/load_audface.py open)::

    aud.npy                  DeepSpeech features (N, 16, 29), one row per video frame (the
                             user's file: asset deepspeech_features or export.nerf_audio)
    bc.jpg                   background image; its size is the loaders' H, W
    ori_imgs/<i>.jpg         the frames the BFM tracker fitted (crop frames)
    head_imgs/<i>.jpg        HeadNeRF targets: the head over bc.jpg
    com_imgs/<i>.jpg         TorsoNeRF targets: the frame with its background replaced by bc.jpg
    transforms_train.json    {focal_len, cx, cy, frames: [{img_id, aud_id, transform_matrix,
    transforms_val.json       face_rect}]}: the last 1/11 of the frames are val
    HeadNeRF_config.txt, TorsoNeRF_config.txt, TorsoNeRFTest_config.txt   near/far as step 7
    track_params.npz         euler (N,3), trans (N,3), focal: the tracker's own values
    prep_export.json

``transform_matrix`` is AD-NeRF's camera-to-world (OpenGL axes) of ``[R | trans / 10]`` with R
from its Euler convention (see `prep.export.cameras`). ``cx, cy`` are the fine fit's principal
point in AD-NeRF's pixel convention (integer pixel centres: get_rays uses ``i - cx`` for pixel
index i), so projections match the fit exactly; AD-NeRF's own tracker writes ``w / 2``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.config.export import ExportConfig
from prep.errors import BadInputError, MissingInputError
from prep.export.adnerf_images import estimate_background, face_rect, head_and_composite
from prep.export.cameras import ADNERF_TRANS_SCALE, adnerf_from_poses, adnerf_poses
from prep.export.info import write_export_info
from prep.io.files import load_npz, read_image, read_json, save_npz, write_bytes, write_json
from prep.io.files import write_image as write_img
from prep.progress import progress
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

AUDIO_SHAPE = (16, 29)  # deepspeech_features.py: windows of 16 DeepSpeech frames x 29 letters
NEAR_OFFSET, FAR_OFFSET = -0.2, 0.4  # process_data.py step 7: near = mean_z - 0.2, far + 0.4


def load_audio_features(path: Path, n_frames: int) -> np.ndarray:
    """Read and check a DeepSpeech feature file ``(N, 16, 29)``.

    Raises:
        BadInputError: wrong shape.
    """
    aud = np.load(path)
    if aud.ndim != 3 or aud.shape[1:] != AUDIO_SHAPE:
        raise BadInputError(
            f"{path}: DeepSpeech features have shape {aud.shape}, AD-NeRF reads (N, 16, 29) "
            "(data_util/deepspeech_features/extract_ds_features.py)"
        )
    if len(aud) < n_frames:
        log.warning(
            "%s: %d audio rows for %d frames; AD-NeRF repeats the last row for the rest",
            path,
            len(aud),
            n_frames,
        )
    return aud.astype(np.float32)


def _fine(subject: SubjectDir) -> dict[str, np.ndarray]:
    path = subject.bfm_fine
    if not path.exists():
        raise MissingInputError("fit_3dmm_fine", path, f"nerf export needs BFM tracking {path}")
    z = load_npz(path)
    for key in ("euler", "trans", "focal", "K", "image_size"):
        if key not in z:
            raise BadInputError(f"{path} lacks {key!r}; re-run stage=fit_3dmm_fine")
    return z


def export_nerf(
    subject: SubjectDir, cfg: ExportConfig, out: Path, force: bool, audio: Path | None = None
) -> int:
    """Write the AD-NeRF folder; returns the number of frames exported.

    Args:
        audio: DeepSpeech feature file for this clip (checked by the stage: asset or config).
    """

    z = _fine(subject)
    euler, trans = z["euler"].astype(np.float64), z["trans"].astype(np.float64)
    n = len(euler)
    valid = z["valid"].astype(bool) if "valid" in z else np.ones(n, bool)
    idx = np.flatnonzero(valid) if cfg.only_valid else np.arange(n)
    if len(idx) == 0:
        raise BadInputError(f"{subject.bfm_fine}: no valid frame to export")
    if not subject.parsing_dir.is_dir():
        raise MissingInputError("parsing", subject.parsing_dir, "nerf export needs parsing labels")
    h, w = (int(v) for v in z["image_size"])
    K = np.asarray(z["K"], np.float64).reshape(-1, 3, 3)[0]

    def rgb(i: int) -> np.ndarray:
        return read_image(subject.face_frame_path(i))

    def labels(i: int) -> np.ndarray:
        return read_image(subject.parsing_path(i), "gray")

    if audio is not None:
        buf = io.BytesIO()
        np.save(buf, load_audio_features(audio, n))
        write_bytes(out / "aud.npy", buf.getvalue())
    bc = estimate_background([int(i) for i in idx], rgb, labels)
    write_img(out / "bc.jpg", bc)
    for i in progress(idx, total=len(idx), desc="export nerf"):
        i = int(i)
        if not force and (out / "com_imgs" / f"{i}.jpg").exists():
            continue
        img = rgb(i)
        head, com = head_and_composite(img, labels(i), bc)
        write_img(out / "ori_imgs" / f"{i}.jpg", img)
        write_img(out / "head_imgs" / f"{i}.jpg", head)
        write_img(out / "com_imgs" / f"{i}.jpg", com)
    rects = _face_rects(subject, idx, (h, w))
    poses = adnerf_poses(euler, trans)
    save_npz(out / "track_params.npz", euler=euler, trans=trans, focal=np.float64(z["focal"]))
    n_val = max(1, int(round(cfg.nerf_val_fraction * len(idx)))) if len(idx) > 1 else 0
    parts = {"train": np.arange(len(idx) - n_val), "val": np.arange(len(idx) - n_val, len(idx))}
    if n_val == 0:
        parts["val"] = parts["train"]
    for name, sel in parts.items():
        frames = [
            {
                "img_id": int(idx[k]),
                "aud_id": int(idx[k]),
                "transform_matrix": poses[idx[k]].tolist(),
                "face_rect": rects[k],
            }
            for k in sel
        ]
        doc = {
            "focal_len": float(K[0, 0]),
            "cx": float(K[0, 2]),
            "cy": float(K[1, 2]),
            "frames": frames,
        }
        write_json(out / f"transforms_{name}.json", doc)
    _write_configs(out, subject.name, trans[idx])
    notes = (
        []
        if audio is not None
        else [
            "nerf: no aud.npy (DeepSpeech features): AD-NeRF cannot "
            "load this folder; set export.nerf_audio"
        ]
    )
    variant = str(z["variant"]) if "variant" in z else "front"
    write_export_info(
        out,
        "nerf",
        f"bfm-{variant}",
        notes,
        n_frames=len(idx),
        image_size=[h, w],
        focal=float(K[0, 0]),
    )
    return len(idx)


def _face_rects(subject: SubjectDir, idx: np.ndarray, image_hw) -> list[list[int]]:
    if not subject.landmarks_npz.exists():
        raise MissingInputError("landmarks", subject.landmarks_npz, "nerf export needs landmarks")
    pts = load_npz(subject.landmarks_npz)["points_px"].astype(np.float64)
    rects, last = [], None
    for i in idx:
        p = pts[i]
        if np.isfinite(p).all():
            last = face_rect(p, image_hw)
        rects.append(
            last if last is not None else [0, 0, int(image_hw[1]) - 1, int(image_hw[0]) - 1]
        )
    return rects


def _write_configs(out: Path, name: str, trans: np.ndarray) -> None:
    """The config files process_data.py step 7 writes (near/far around the mean depth)."""
    mean_z = -float(np.mean(trans[:, 2] / ADNERF_TRANS_SCALE))
    base = f"datadir = {out.resolve()}\nbasedir = {(out / 'logs').resolve()}\n"
    near_far = f"near = {mean_z + NEAR_OFFSET}\nfar = {mean_z + FAR_OFFSET}\n"
    write_bytes(out / "HeadNeRF_config.txt", f"expname = {name}_head\n{base}{near_far}".encode())
    write_bytes(out / "TorsoNeRF_config.txt", f"expname = {name}_com\n{base}{near_far}".encode())
    test = f"expname = {name}_com\n{base}{near_far}with_test = 1\n"
    write_bytes(
        out / "TorsoNeRFTest_config.txt", (test + "test_pose_file = transforms_val.json\n").encode()
    )


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
        root,
        float(d["focal_len"]),
        float(d["cx"]),
        float(d["cy"]),
        np.asarray([f["img_id"] for _, f in frames]),
        c2w,
        euler,
        trans,
        [s for s, _ in frames],
    )
