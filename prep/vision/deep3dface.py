"""Deep3DFaceRecon's coefficient regressor: a ResNet-50 whose published checkpoint loads as is.

The network (``ReconNetWrapper`` in Deep3DFaceRecon_pytorch) is a torchvision-layout ResNet-50
without its classifier (``backbone.*`` keys) followed by seven 1x1 convolutions on the pooled
2048-d feature (``final_layers.{0..6}``: id 80, exp 64, tex 80, angles 3, gamma 27, txy 2,
tz 1), concatenated into the 257-d vector. ``epoch_20.pth`` stores its state dict under
``net_recon``. Input: the 224x224 image aligned by `prep.track.bfm_align`, RGB in [0, 1].

The aligned image is made as Deep3DFaceRecon's ``util/preprocess.py`` ``resize_n_crop_img`` makes
it: the whole frame resized with PIL's (antialiased) bicubic filter to ``int(w0 s) x int(h0 s)``,
then cropped at integer offsets (zeros outside the frame). The five 3D points the alignment fits
come from ``BFM/similarity_Lm3D_all.mat`` as in ``util/load_mats.py`` ``load_lm3d``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.io import loadmat
from torch import nn

from prep.assets import ASSETS, asset_path
from prep.errors import MissingAssetError
from prep.io.safe_load import load_checkpoint
from prep.track.bfm_align import five_points
from prep.vision.resnet import ResNet50Features

log = logging.getLogger(__name__)

HEAD_DIMS = (80, 64, 80, 3, 27, 2, 1)
INPUT_SIZE = 224


class Deep3dFaceNet(nn.Module):
    """Deep3DFaceRecon ReconNetWrapper (resnet50, use_last_fc=False)."""

    def __init__(self):
        super().__init__()
        self.backbone = ResNet50Features()
        self.final_layers = nn.ModuleList([nn.Conv2d(2048, d, 1, bias=True) for d in HEAD_DIMS])

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) RGB in [0, 1] -> (B, 257) coefficients."""
        if img.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (B, 3, 224, 224) images, got {tuple(img.shape)}")
        feat = self.backbone(img)
        return torch.cat([layer(feat) for layer in self.final_layers], 1).flatten(1)


def load_deep3dface(path: Path | str, device: str = "cpu") -> Deep3dFaceNet:
    """Load ``epoch_20.pth`` (a dict with ``net_recon``) or a bare state dict.

    Raises:
        MissingAssetError: unreadable file or keys that do not match the network.
    """
    path = Path(path)
    ckpt = load_checkpoint(path, "deep3dface")  # weights only: refuses code, names corruption
    state = ckpt.get("net_recon", ckpt) if isinstance(ckpt, dict) else None
    net = Deep3dFaceNet()
    if not isinstance(state, dict):
        raise MissingAssetError(
            "deep3dface",
            path,
            config_key="assets.deep3dface",
            reason="no net_recon state dict in the checkpoint",
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MissingAssetError(
            "deep3dface",
            path,
            config_key="assets.deep3dface",
            reason=f"not a Deep3DFaceRecon resnet50 checkpoint ({len(missing)} keys missing, "
            f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})",
        )
    return net.eval().to(device)


def load_lm3d(path: Path | str) -> np.ndarray:
    """The five 3D alignment points (5, 3) from ``similarity_Lm3D_all.mat`` (its 68 points ``lm``:
    eye centres, nose tip, mouth corners, as Deep3DFaceRecon's ``load_lm3d``)."""
    path = Path(path)
    try:
        lm = np.asarray(loadmat(path)["lm"], np.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MissingAssetError(
            "bfm_lm3d", path, ASSETS["bfm_lm3d"].url, "assets.bfm_lm3d", reason=f"unreadable ({e})"
        ) from None
    if lm.shape != (68, 3):
        raise MissingAssetError(
            "bfm_lm3d",
            path,
            ASSETS["bfm_lm3d"].url,
            "assets.bfm_lm3d",
            reason=f"'lm' has shape {lm.shape}, expected (68, 3)",
        )
    return five_points(lm)


def alignment_points(cfg, mean_keypoints: np.ndarray) -> np.ndarray:
    """(5, 3) points the 5-point alignment fits: Deep3DFaceRecon's file when present (required by
    the regressor, which was trained on images aligned to them), else the BFM mean shape's."""
    path = asset_path(cfg, "bfm_lm3d")
    if path.is_file():
        return load_lm3d(path)
    log.info("%s absent: aligning to the BFM mean shape's keypoints", path)
    return five_points(np.asarray(mean_keypoints, np.float64))


def align_image(img: np.ndarray, trans_params: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """One frame aligned as Deep3DFaceRecon's ``resize_n_crop_img`` (util/preprocess.py).

    Args:
        img: (h0, w0, 3) RGB uint8 frame.
        trans_params: ``[w0, h0, s, t0, t1]`` (t in the y-up frame, `pos_align`).
        size: output side.

    Returns:
        (size, size, 3) uint8.
    """
    w0, h0 = img.shape[1], img.shape[0]
    s, t0, t1 = (np.float64(v) for v in trans_params[2:5])
    w, h = int(w0 * s), int(h0 * s)  # truncation, as their astype(np.int32)
    left = int(w / 2 - size / 2 + float((t0 - w0 / 2) * s))
    up = int(h / 2 - size / 2 + float((h0 / 2 - t1) * s))
    resized = Image.fromarray(img).resize((w, h), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized.crop((left, up, left + size, up + size)))


def aligned_batch(images: list[np.ndarray], trans_params: np.ndarray) -> torch.Tensor:
    """Face frames aligned to the 224 crop: (B, 3, 224, 224) float in [0, 1].

    Args:
        images: B RGB uint8 frames.
        trans_params: (B, 5) alignment parameters (`prep.track.bfm_align.pos_align`).
    """
    out = [align_image(img, tp) for img, tp in zip(images, trans_params, strict=True)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def regress_frames(
    weights: Path,
    device: str,
    frame: Callable[[int], np.ndarray],
    model,
    lm: dict,
    trans_params: np.ndarray,
    settings,
    batch: int = 32,
):
    """Run the regressor on every face frame; returns (coeff (T, 257), lmk_rmse_px (T,)).

    The landmark RMSE compares the regressed model's projected keypoints with the detected
    landmarks in the aligned 224 image.

    Args:
        weights: the published checkpoint (asset ``deep3dface``). device: torch device.
        frame: ``frame(i)`` -> (H, W, 3) uint8 RGB face frame i.
        model: the front BFM. lm: landmarks with ``points_px`` (T, 68, 2) and ``weights``.
        trans_params: (T, 5) alignment parameters. settings: ``fit_3dmm_coarse``.
    """
    from prep.progress import progress
    from prep.track.bfm_align import aligned_from_source, apply_affine
    from prep.track.bfm_coarse import project_keypoints

    net = load_deep3dface(weights, device)
    s = settings
    M = aligned_from_source(trans_params, INPUT_SIZE)
    T = len(trans_params)
    coeff = np.zeros((T, 257), np.float32)
    for i0 in progress(range(0, T, batch), total=(T + batch - 1) // batch, desc="deep3dface"):
        i1 = min(i0 + batch, T)
        imgs = [frame(i) for i in range(i0, i1)]
        with torch.no_grad():
            x = aligned_batch(imgs, trans_params[i0:i1]).to(device)
            coeff[i0:i1] = net(x).cpu().numpy()
    c = torch.from_numpy(coeff)
    with torch.no_grad():
        xy = project_keypoints(
            model.subset(model.keypoints), c[:, :80], c[:, 80:144], c[:, 224:227], c[:, 254:257], s
        ).numpy()
    target = apply_affine(M, lm["points_px"])
    w = lm["weights"]
    sq = ((xy - target) ** 2).sum(-1)
    rmse = np.sqrt((sq * w).sum(1) / np.maximum(w.sum(1), 1e-6))
    return coeff, rmse.astype(np.float32)
