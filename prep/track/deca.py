"""DECA's coarse encoder (``E_flame``), written here so a user's ``deca_model.tar`` loads.

DECA regresses 236 numbers per 224x224 face crop with a ResNet-50 trunk and a two-layer head:
shape 100, texture 50, expression 50, pose 6 (global 3, jaw 3), camera 3, light 27. The tracker
uses shape (averaged over frames), expression and pose as its initial values (``init=deca``),
as IMAvatar/HRAvatar do with DECA's ``code.json``. The checkpoint is loaded with
``torch.load(weights_only=True)`` and its ``E_flame`` keys must match this module exactly
(``encoder.*`` ResNet-50 in torchvision's layout, ``layers.0`` and ``layers.2`` linear layers).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from prep.errors import MissingAssetError
from prep.io.files import read_image
from prep.subject import SubjectDir
from prep.track.flame_params import InitValues
from prep.vision.resnet import ResNet50Features

log = logging.getLogger(__name__)

DECA_SPLIT = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}
INPUT_SIZE = 224
BOX_SCALE = 1.25  # DECA's crop: the landmark box enlarged by this factor


class DecaEncoder(nn.Module):
    """DECA's ``E_flame``: ResNet-50 trunk + Linear(2048, 1024) -> ReLU -> Linear(1024, 236)."""

    def __init__(self):
        super().__init__()
        self.encoder = ResNet50Features()
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, 236))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, 224, 224) RGB in [0, 1] -> DECA's named codes."""
        code = self.layers(self.encoder(images).flatten(1))
        out, i = {}, 0
        for name, n in DECA_SPLIT.items():
            out[name] = code[:, i : i + n]
            i += n
        return out


def load_deca_encoder(path: Path | str, device: str = "cpu") -> DecaEncoder:
    """Load ``E_flame`` from ``deca_model.tar`` (weights only; unexpected layouts are refused)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise MissingAssetError("deca", path, reason=f"unreadable checkpoint ({e})") from None
    sd = ckpt.get("E_flame") if isinstance(ckpt, dict) else None
    if sd is None:
        raise MissingAssetError("deca", path, reason="no 'E_flame' state dict in the checkpoint")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if not k.startswith("encoder.fc.")}
    model = DecaEncoder()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise MissingAssetError(
            "deca",
            path,
            reason=f"E_flame layout differs (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    return model.eval().to(device)


def face_crops(images: list[np.ndarray], lmk_px: np.ndarray) -> np.ndarray:
    """DECA input crops ``(B, 3, 224, 224)`` float32 from images and their 68 landmarks."""
    out = np.zeros((len(images), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for k, (img, pts) in enumerate(zip(images, lmk_px, strict=True)):  # one warp per frame
        lo, hi = pts.min(0), pts.max(0)
        c, half = (lo + hi) / 2, (hi - lo).max() * BOX_SCALE / 2
        s = INPUT_SIZE / (2 * half)
        M = np.array([[s, 0, INPUT_SIZE / 2 - s * c[0]], [0, s, INPUT_SIZE / 2 - s * c[1]]])
        crop = cv2.warpAffine(img, M, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR)
        out[k] = crop.transpose(2, 0, 1) / 255.0
    return out


@torch.no_grad()
def deca_init(
    path: Path,
    subject: SubjectDir,
    data,
    n_shape: int,
    n_expr: int,
    device: str = "cpu",
    batch: int = 16,
) -> InitValues:
    """Initial shape/expression/pose for every frame from DECA's encoder."""
    from prep.stages.landmarks import face_frame_path

    model = load_deca_encoder(path, device)
    T = data.n_frames
    expr, gp, jaw = np.zeros((T, n_expr)), np.zeros((T, 3)), np.zeros((T, 3))
    shapes = []
    idx = np.flatnonzero(data.valid)
    for i0 in range(0, len(idx), batch):
        sel = idx[i0 : i0 + batch]
        imgs = [
            read_image(face_frame_path(subject, int(Path(str(data.frame_names[i])).stem)))
            for i in sel
        ]
        x = torch.as_tensor(face_crops(imgs, data.lmk_px[sel]), device=device)
        code = {k: v.double().cpu().numpy() for k, v in model(x).items()}
        ne = min(n_expr, DECA_SPLIT["exp"])
        expr[sel, :ne] = code["exp"][:, :ne]
        gp[sel], jaw[sel] = code["pose"][:, :3], code["pose"][:, 3:]
        shapes.append(code["shape"])
    shape = np.zeros(n_shape)
    ns = min(n_shape, DECA_SPLIT["shape"])
    shape[:ns] = np.concatenate(shapes).mean(0)[:ns]
    log.info("DECA init from %d frames", len(idx))
    return InitValues(shape=shape, expr=expr, global_pose=gp, jaw_pose=jaw)
