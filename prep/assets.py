"""Registry of external files the pipeline can use but may not ship.

Each asset has a config key under `assets.` (its path), where to get it, its licence and, where
published and stable, its sha256. `resolve_asset` turns a missing or corrupt file into one
`MissingAssetError` line that names the file, where it was looked for, where to get it and which
key overrides the path. `python launch.py stage=assets` prints the table of what is present,
corrupt, refused (could run code) or missing: `prep.asset_checks` opens each file to tell.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prep.errors import MissingAssetError

if TYPE_CHECKING:
    from prep.config import Config


@dataclass(frozen=True)
class Asset:
    """One external file (or folder, when `is_dir`)."""

    name: str
    description: str
    url: str
    licence: str
    sha256: str | None = None
    is_dir: bool = False
    used_by: str = ""


_FLAME = "https://flame.is.tue.mpg.de (register, then download)"
# The files face-alignment 1.5 loads (the file names of its URLs; prep.vision.landmarks.fan_backend
# reads them from the installed face-alignment's own tables, these when it is not installed).
FAN_FILES = {"fan": "2DFAN4-11f355bf06.pth.tar", "s3fd": "s3fd-619a316812.pth"}
_BFM = "https://faces.dmi.unibas.ch/bfm/ (register); Deep3DFaceRecon_pytorch README for the rest"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "flame2020",
            "FLAME 2020 generic_model.pkl",
            _FLAME,
            "FLAME licence (non-commercial)",
            used_by="fit_flame flame=flame2020",
        ),
        Asset(
            "flame2023",
            "FLAME 2023 flame2023.pkl",
            _FLAME,
            "FLAME licence (non-commercial)",
            used_by="fit_flame flame=flame2023",
        ),
        Asset(
            "flame_lmk_embedding",
            "FLAME 68-point landmark embedding (DECA data/)",
            "https://github.com/yfeng95/DECA (data/landmark_embedding.npy)",
            "MPI non-commercial",
            used_by="fit_flame",
        ),
        Asset(
            "flame_lmk_embedding_eyes",
            "FLAME 70-point embedding with iris centres",
            "https://github.com/zhengyuf/IMavatar (landmark_embedding_with_eyes.npy)",
            "MPI non-commercial",
            used_by="fit_flame",
        ),
        Asset(
            "flame_mediapipe_embedding",
            "FLAME-to-MediaPipe 105-point embedding",
            "https://github.com/Zielon/metrical-tracker (flame/mediapipe/)",
            "MPI non-commercial",
            used_by="fit_flame when fit_flame.w.dense>0",
        ),
        Asset(
            "flame_masks",
            "FLAME_masks.pkl (vertex regions)",
            _FLAME,
            "FLAME licence",
            used_by="fit_flame photometric",
        ),
        Asset(
            "bfm_front",
            "BFM_model_front.mat (Deep3DFaceRecon)",
            _BFM,
            "BFM licence",
            used_by="fit_3dmm_coarse, fit_3dmm_fine",
        ),
        Asset(
            "bfm_lm3d",
            "similarity_Lm3D_all.mat (Deep3DFaceRecon BFM/: 3D points of the 5-point alignment)",
            "https://github.com/sicxu/Deep3DFaceRecon_pytorch (BFM/similarity_Lm3D_all.mat)",
            "MIT",
            sha256="53b83ce6e35c50ddc3e97603650cef4970320c157e75c241c844f29c1dcba65a",
            used_by="fit_3dmm_coarse (alignment; required by fit_3dmm_coarse=deep3dface)",
        ),
        Asset(
            "bfm_2009",
            "01_MorphableModel.mat (BFM 2009)",
            _BFM,
            "BFM licence",
            used_by="building BFM_model_front.mat",
        ),
        Asset(
            "bfm_exp_pca",
            "Exp_Pca.bin (expression basis)",
            "https://github.com/Juyong/3DFace",
            "research only",
            used_by="building BFM_model_front.mat",
        ),
        Asset(
            "bfm_adnerf",
            "3DMM_info.npy (AD-NeRF variant)",
            "https://github.com/YudongGuo/AD-NeRF (data_util/face_tracking)",
            "BFM licence",
            used_by="fit_3dmm_fine bfm.variant=adnerf",
        ),
        Asset(
            "rvm_mobilenetv3",
            "RobustVideoMatting MobileNetV3 weights",
            "https://github.com/PeterL1n/RobustVideoMatting/releases",
            "GPL-3.0",
            used_by="matting=rvm",
        ),
        Asset(
            "rvm_resnet50",
            "RobustVideoMatting ResNet-50 weights",
            "https://github.com/PeterL1n/RobustVideoMatting/releases",
            "GPL-3.0",
            used_by="matting=rvm matting.backend.variant=resnet50",
        ),
        Asset(
            "modnet",
            "MODNet webcam portrait matting checkpoint",
            "https://github.com/ZHKKKe/MODNet (pretrained/)",
            "Apache-2.0 (code); CC BY-NC-SA",
            used_by="matting=modnet",
        ),
        Asset(
            "bisenet",
            "BiSeNet face parsing 79999_iter.pth",
            "https://github.com/zllrunning/face-parsing.PyTorch",
            "MIT (weights: research)",
            used_by="parsing=bisenet",
        ),
        Asset(
            "deca",
            "DECA deca_model.tar",
            "https://deca.is.tue.mpg.de (register)",
            "MPI non-commercial",
            used_by="fit_flame when fit_flame.init=deca",
        ),
        Asset(
            "deep3dface",
            "Deep3DFaceRecon_pytorch epoch_20.pth",
            "https://github.com/sicxu/Deep3DFaceRecon_pytorch",
            "MIT (weights: research)",
            used_by="fit_3dmm_coarse=deep3dface",
        ),
        Asset(
            "fan_dir",
            "face-alignment (FAN) weights: any plain folder holding the exact files face-alignment "
            f"1.5 loads, {FAN_FILES['fan']} and {FAN_FILES['s3fd']} (default: torch hub's "
            "checkpoints folder, where face-alignment itself would download them)",
            "https://github.com/1adrianb/face-alignment (the files its URL tables name: "
            f"{FAN_FILES['fan']}, {FAN_FILES['s3fd']})",
            "BSD-3-Clause",
            is_dir=True,
            used_by="landmarks=fan",
        ),
        Asset(
            "insta_topology",
            "INSTA's simplified FLAME topology: its scripts/topology folder (head_idxs.npy, "
            "flame_vertices_mask.npy, template_face_sparse.npy) or INSTA-pytorch's "
            "insta/mesh_masks folder (canonical.obj)",
            "https://github.com/Zielon/INSTA (scripts/topology)",
            "MPI non-commercial",
            is_dir=True,
            used_by="export insta",
        ),
        Asset(
            "deepspeech_features",
            "folder of DeepSpeech features per clip, <subject>.npy (N, 16, 29), made with "
            "AD-NeRF's data_util/deepspeech_features/extract_ds_features.py on audio.wav",
            "https://github.com/YudongGuo/AD-NeRF (data_util/deepspeech_features)",
            "AD-NeRF: MIT; DeepSpeech 0.1.0 model: MPL-2.0",
            is_dir=True,
            used_by="export nerf (aud.npy)",
        ),
        Asset(
            "intrinsic_anything_dir",
            "IntrinsicAnything install (code + weights)",
            "https://github.com/zju3dv/IntrinsicAnything",
            "research only",
            is_dir=True,
            used_by="albedo=intrinsic_anything",
        ),
    ]
}


def asset_path(cfg: Config, name: str) -> Path:
    """The configured path of asset `name` (not checked)."""
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}")
    return Path(getattr(cfg.assets, name)).expanduser()


def resolve_asset(cfg: Config, name: str) -> Path:
    """The path of asset `name`, checked to exist (and match its sha256 when known)."""
    asset = ASSETS[name]
    path = asset_path(cfg, name)
    key = f"assets.{name}"
    ok = path.is_dir() if asset.is_dir else path.is_file()
    if not ok:
        raise MissingAssetError(name, path, asset.url, key)
    if not asset.is_dir and path.stat().st_size == 0:
        raise MissingAssetError(name, path, asset.url, key, reason="empty file")
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
