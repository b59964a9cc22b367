"""BiSeNet face-parsing network (ResNet-18 context path) loading face-parsing.PyTorch weights.

The module tree reproduces the published checkpoint ``79999_iter.pth`` key layout
(``cp.resnet.conv1.weight``, ``cp.resnet.layer1.0.conv1.weight``, ``cp.arm16.conv.conv.weight``,
``cp.conv_avg.bn.running_mean``, ``ffm.convblk.conv.weight``, ``ffm.conv1.weight``,
``conv_out.conv_out.weight``, ``conv_out16...``, ``conv_out32...``): a ResNet-18 whose 1/8, 1/16
and 1/32 features feed attention-refinement heads, fused with the 1/8 feature (the published model
has no separate spatial path). Input: RGB normalised with ImageNet mean/std, 512x512; output:
19-class logits at input size. Only the main head is evaluated at inference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prep.errors import MissingAssetError
from prep.io.safe_load import load_checkpoint

log = logging.getLogger(__name__)

N_CLASSES = 19
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
URL = "https://github.com/zllrunning/face-parsing.PyTorch (79999_iter.pth, Google Drive link)"


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(out + short)


def _layer(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class ResNet18(nn.Module):
    """ResNet-18 trunk returning the 1/8, 1/16 and 1/32 feature maps."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        att = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * att


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        avg = self.conv_avg(F.adaptive_avg_pool2d(f32, 1))
        up32 = self.arm32(f32) + F.interpolate(avg, f32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(up32, f16.shape[2:], mode="nearest"))
        up16 = self.arm16(f16) + up32
        up16 = self.conv_head16(F.interpolate(up16, f8.shape[2:], mode="nearest"))
        return f8, up16


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat * att + feat


class OutputHead(nn.Module):
    def __init__(self, cin: int, cmid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cmid)
        self.conv_out = nn.Conv2d(cmid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face-parsing BiSeNet; ``forward`` returns (B, 19, H, W) logits of the main head."""

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        # auxiliary heads: unused at inference, present so the checkpoint loads strictly
        self.conv_out16 = OutputHead(128, 64, n_classes)
        self.conv_out32 = OutputHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, cp8 = self.cp(x)
        out = self.conv_out(self.ffm(f8, cp8))
        return F.interpolate(out, x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(path: Path, device: str = "cpu") -> BiSeNet:
    """Build BiSeNet and load a face-parsing.PyTorch state dict from `path`.

    Raises:
        MissingAssetError: when the file is missing, unreadable, or not this network's weights.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingAssetError("bisenet", path, URL, "assets.bisenet")
    state = load_checkpoint(path, "bisenet", URL)  # weights only: refuses code, names corruption
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MissingAssetError("bisenet", path, URL, "assets.bisenet", reason="not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = BiSeNet()
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # older torch saves
    if missing or unexpected:
        raise MissingAssetError(
            "bisenet",
            path,
            URL,
            "assets.bisenet",
            reason=f"not face-parsing BiSeNet weights ({len(missing)} keys missing, "
            f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]!r})",
        )
    return net.eval().to(device)


@torch.no_grad()
def parse_images(
    net: BiSeNet, images_rgb: list[np.ndarray], size: int = 512, device: str = "cpu"
) -> np.ndarray:
    """Label maps of RGB images with BiSeNet.

    Args:
        net: loaded network.
        images_rgb: list of (H, W, 3) uint8 images of the same size.
        size: network input size (square).
        device: torch device.

    Returns:
        (B, H, W) uint8 labels at the images' own size (nearest resize).
    """
    x = torch.from_numpy(np.stack(images_rgb)).to(device).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[2:]
    x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    logits = net((x - mean) / std)
    labels = logits.argmax(1, keepdim=True).float()
    labels = F.interpolate(labels, (h, w), mode="nearest")
    return labels[:, 0].to(torch.uint8).cpu().numpy()
