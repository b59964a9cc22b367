"""DECA's coarse encoder (``E_flame``), written here so a user's ``deca_model.tar`` loads.

DECA regresses 236 numbers per 224x224 face crop with a ResNet-50 trunk and a two-layer head:
shape 100, texture 50, expression 50, pose 6 (global 3, jaw 3), camera 3, light 27. The tracker
uses shape (averaged over frames), expression and pose as its initial values (``init=deca``),
as IMAvatar/HRAvatar do with DECA's ``code.json``. The checkpoint is loaded with
``torch.load(weights_only=True)`` and its ``E_flame`` keys must match this module exactly
(``encoder.*`` ResNet-50 in torchvision's layout without its classifier, ``layers.0`` and
``layers.2`` linear layers).

The input crop follows DECA's inference (yfeng95/DECA ``decalib/datasets/datasets.py``): a square
of side ``int((w + h) / 2 * 1.1 * 1.25)`` around the centre of the 68-landmark box, its corners
mapped onto pixels 0 and 223, sampled bilinearly from the image in [0, 1] (`face_crops`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prep.errors import MissingAssetError
from prep.io.files import read_image
from prep.io.safe_load import load_checkpoint
from prep.subject import SubjectDir
from prep.track.flame_params import InitValues
from prep.vision.resnet import ResNet50Features

log = logging.getLogger(__name__)

DECA_SPLIT = {"shape": 100, "tex": 50, "exp": 50, "pose": 6, "cam": 3, "light": 27}
INPUT_SIZE = 224
KPT68_ENLARGE = 1.1  # DECA's landmark box: mean side x 1.1 (bbox2point, type 'kpt68')
BOX_SCALE = 1.25  # DECA's crop: that box enlarged by this factor (TestData scale)


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
    ckpt = load_checkpoint(path, "deca")  # weights only: refuses code, names corruption
    sd = ckpt.get("E_flame") if isinstance(ckpt, dict) else None
    if sd is None:
        raise MissingAssetError("deca", path, reason="no 'E_flame' state dict in the checkpoint")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = DecaEncoder()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise MissingAssetError(
            "deca",
            path,
            reason=f"E_flame layout differs (missing {missing[:3]}, unexpected {unexpected[:3]})",
        )
    return model.eval().to(device)


def deca_boxes(lmk_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DECA's square crop of each face from its 68 landmarks (the ``kpt68`` rule).

    The landmark box (min/max of x and y) gives a centre and a side of ``(w + h) / 2 * 1.1``;
    DECA enlarges that by 1.25 and truncates to an integer (``int(old_size * scale)``).

    Args:
        lmk_px: (B, 68, 2) landmarks in image pixels (x right, y down, pixel centres at integers).

    Returns:
        centre_px (B, 2) float64 and side_px (B,) int64.
    """
    pts = np.asarray(lmk_px, np.float64)
    lo, hi = pts.min(1), pts.max(1)
    old_size = ((hi[:, 0] - lo[:, 0]) + (hi[:, 1] - lo[:, 1])) / 2 * KPT68_ENLARGE
    side = (old_size * BOX_SCALE).astype(np.int64)  # int() truncation, as DECA
    return hi - (hi - lo) / 2.0, side


def crop_from_source(lmk_px: np.ndarray) -> np.ndarray:
    """(B, 3, 3) similarities source pixels -> crop pixels (DECA's ``tform.params``).

    The crop's corners ``centre -/+ side/2`` land on pixels 0 and 223 (pixel centres).
    """
    centre, side = deca_boxes(lmk_px)
    s = (INPUT_SIZE - 1) / side
    T = np.zeros((len(side), 3, 3))
    T[:, 0, 0] = T[:, 1, 1] = s
    T[:, :2, 2] = -s[:, None] * (centre - side[:, None] / 2)
    T[:, 2, 2] = 1
    return T


def face_crops(images: list[np.ndarray], lmk_px: np.ndarray) -> np.ndarray:
    """DECA input crops ``(B, 3, 224, 224)`` float32 RGB in [0, 1].

    Bilinear sampling with zeros outside the image, pixel centres at integers, on the image
    divided by 255: what DECA's ``skimage.transform.warp`` (order 1, constant 0) computes.

    Args:
        images: B RGB uint8 frames of one size.
        lmk_px: (B, 68, 2) their landmarks in pixels.
    """
    T = crop_from_source(lmk_px)
    imgs = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    h, w = imgs.shape[-2:]
    # crop pixel (x, y) samples the source at T^-1 (x, y); as normalised coordinates with
    # align_corners=True, -1 and +1 are the centres of the first and last source pixels.
    xy = np.arange(INPUT_SIZE, dtype=np.float64)
    inv = np.linalg.inv(T)
    src_x = inv[:, 0, 0, None] * xy + inv[:, 0, 2, None]  # (B, 224), no rotation or shear
    src_y = inv[:, 1, 1, None] * xy + inv[:, 1, 2, None]
    gx = np.broadcast_to((2 * src_x / (w - 1) - 1)[:, None, :], (len(T), INPUT_SIZE, INPUT_SIZE))
    gy = np.broadcast_to((2 * src_y / (h - 1) - 1)[:, :, None], (len(T), INPUT_SIZE, INPUT_SIZE))
    grid = torch.from_numpy(np.stack([gx, gy], -1)).float()
    out = F.grid_sample(imgs, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.numpy()


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

    model = load_deca_encoder(path, device)
    T = data.n_frames
    expr, gp, jaw = np.zeros((T, n_expr)), np.zeros((T, 3)), np.zeros((T, 3))
    shapes = []
    idx = np.flatnonzero(data.valid)
    for i0 in range(0, len(idx), batch):
        sel = idx[i0 : i0 + batch]
        imgs = [
            read_image(subject.face_frame_path(int(Path(str(data.frame_names[i])).stem)))
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
