"""Soft alpha matting backends behind one interface.

Every backend is built from its own settings (``matting.backend``, e.g.
`prep.config.perception.RvmMattingConfig`) as ``cls(settings, weights, device)`` and opened with
``with make_matter(cfg, weights) as m:`` (MediaPipe graphs and networks are created there, in
the process that uses them; `weights` is the path of the one asset ``settings.assets()`` names,
None for selfie), then ``m.matte(rgb)`` maps an
(H, W, 3) uint8 RGB frame to an (H, W) float32 alpha in [0, 1]. Backends with temporal state
(RVM's recurrent state) carry it across calls until ``m.reset()``.

- selfie: MediaPipe selfie segmentation (ships with mediapipe; the default). Its output is a
  coarse person probability; `prep.vision.matting.refine` turns it into a soft matte.
- rvm: Robust Video Matting (`rvm.MattingNetwork`, user-supplied weights).
- modnet: MODNet webcam portrait matting (`modnet.MODNet`, user-supplied weights).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prep.assets import ASSETS
from prep.config.backends import instantiate
from prep.config.perception import (
    MattingConfig,
    ModnetMattingConfig,
    RvmMattingConfig,
    SelfieMattingConfig,
)
from prep.errors import MissingAssetError
from prep.io.safe_load import load_checkpoint

log = logging.getLogger(__name__)


def load_state_dict(net: torch.nn.Module, path: Path, asset: str) -> None:
    """Load published weights into `net` strictly; a broken file becomes MissingAssetError.

    Accepts a bare state dict or one wrapped as {"state_dict": ...}, and strips the
    ``module.`` prefix nn.DataParallel checkpoints carry. Missing BatchNorm
    ``num_batches_tracked`` counters (absent from old checkpoints) are tolerated.
    """
    info = ASSETS[asset]
    key = f"assets.{asset}"
    sd = load_checkpoint(path, asset, info.url)  # weights only: refuses code, names corruption
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise MissingAssetError(asset, path, info.url, key, reason="not a state dict")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    res = net.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or res.unexpected_keys:
        bad = (missing + res.unexpected_keys)[:2]
        reason = (
            f"checkpoint does not match the {asset} layout ({len(missing)} missing, "
            f"{len(res.unexpected_keys)} unexpected keys, e.g. {bad})"
        )
        raise MissingAssetError(asset, path, info.url, key, reason=reason)


class SelfieMatter:
    """MediaPipe selfie segmentation (general 256x256 or landscape 144x256 model)."""

    def __init__(self, settings: SelfieMattingConfig, weights: None = None, device: str = "cpu"):
        self.settings = settings
        self._graph: Any = None  # mediapipe's SelfieSegmentation (untyped)

    def __enter__(self) -> SelfieMatter:
        from mediapipe.python.solutions import selfie_segmentation

        from prep.vision.mp_graph import open_graph

        self._graph = open_graph(
            lambda: selfie_segmentation.SelfieSegmentation(model_selection=self.settings.model)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._graph is not None:
            self._graph.close()
        self._graph = None

    def reset(self) -> None:
        """The graph smooths nothing across frames we rely on; state lives in MattePostprocess."""

    def matte(self, rgb: np.ndarray) -> np.ndarray:
        mask = self._graph.process(np.ascontiguousarray(rgb)).segmentation_mask
        return np.clip(mask, 0.0, 1.0).astype(np.float32)


class RvmMatter:
    """Robust Video Matting with its recurrent state carried from frame to frame."""

    def __init__(self, settings: RvmMattingConfig, weights: Path, device: str = "cpu"):
        self.settings, self.weights, self.device = settings, weights, torch.device(device)
        self.rec: list[torch.Tensor | None] = [None] * 4
        self._hw: tuple[int, int] | None = None
        self.net: torch.nn.Module | None = None  # built in __enter__

    def __enter__(self) -> RvmMatter:
        from prep.vision.matting.rvm import MattingNetwork

        self.net = MattingNetwork(self.settings.variant).eval()
        load_state_dict(self.net, self.weights, f"rvm_{self.settings.variant}")
        self.net.to(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self.net = None

    def reset(self) -> None:
        self.rec = [None] * 4

    @torch.inference_mode()
    def matte(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        ratio = self.settings.downsample_ratio or min(512 / max(h, w), 1.0)
        if (h, w) != self._hw:  # the recurrent state only fits frames of one size
            self.reset()
            self._hw = (h, w)
        src = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255
        assert self.net is not None, "RvmMatter.matte outside its with block"
        _, pha, self.rec = self.net(src, self.rec, ratio)
        return pha[0, 0].cpu().numpy()


def modnet_input_size(h: int, w: int, ref_size: int) -> tuple[int, int]:
    """MODNet's network input (rh, rw) for an (h, w) image, as its image demo chooses it.

    ZHKKKe/MODNet ``demo/image_matting/colab/inference.py`` (lines 83-95): when both sides are
    below or both above `ref_size`, the short side becomes `ref_size` and the long one
    ``int(long / short * ref_size)``; then both are rounded down to multiples of 32 (never below
    32 here, where the demo would fail).
    """
    if max(h, w) < ref_size or min(h, w) > ref_size:
        if w >= h:
            rh, rw = ref_size, int(w / h * ref_size)
        else:
            rh, rw = int(h / w * ref_size), ref_size
    else:
        rh, rw = h, w
    return max(32, rh - rh % 32), max(32, rw - rw % 32)


class ModnetMatter:
    """MODNet with its image demo's pre- and post-processing, for frames of any size: RGB
    normalised to [-1, 1] as float, area-resized to `modnet_input_size` and the matte
    area-resized back (``F.interpolate(mode='area')`` both ways, inference.py lines 74-102)."""

    def __init__(self, settings: ModnetMattingConfig, weights: Path, device: str = "cpu"):
        self.settings, self.weights, self.device = settings, weights, torch.device(device)
        self.net: torch.nn.Module | None = None  # built in __enter__

    def __enter__(self) -> ModnetMatter:
        from prep.vision.matting.modnet import MODNet

        self.net = MODNet().eval()
        load_state_dict(self.net, self.weights, "modnet")
        self.net.to(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self.net = None

    def reset(self) -> None:
        """MODNet is per-frame."""

    @torch.inference_mode()
    def matte(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        # ToTensor then Normalize(0.5, 0.5), in that order, for the demo's float rounding
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float().div(255)
        x = (x - 0.5) / 0.5
        x = F.interpolate(x, size=modnet_input_size(h, w, self.settings.ref_size), mode="area")
        assert self.net is not None, "ModnetMatter.matte outside its with block"
        matte = F.interpolate(self.net(x), size=(h, w), mode="area")
        return matte[0, 0].cpu().numpy()


Matter = SelfieMatter | RvmMatter | ModnetMatter


def make_matter(cfg: MattingConfig, weights: Path | None, device: str = "cpu") -> Matter:
    """The configured backend (open it with ``with``); `weights`: the path of the asset
    ``cfg.backend.assets()`` names, if any."""
    return instantiate(cfg.backend, weights, device)
