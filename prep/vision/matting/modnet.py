"""MODNet (Ke et al. 2022) in plain torch, laid out so the published checkpoint
(`modnet_webcam_portrait_matting.ckpt`, saved from nn.DataParallel: keys start with `module.`)
loads with `load_state_dict(strict=True)` after the prefix is stripped.

Module names follow the published state dict: `backbone.model.features` (MobileNetV2), the same
backbone again under `lr_branch.backbone` (the original registers it twice), `lr_branch`,
`hr_branch`, `f_branch`, convolutions wrapped as `<name>.layers.{0 conv, 1 IBNorm}`. Input: RGB
normalised to [-1, 1], (B, 3, H, W) with H, W multiples of 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _up(x: Tensor, f: float) -> Tensor:
    return F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)


class _InvertedResidualV2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hid = round(cin * t)
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(True)]
        layers += [
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU6(True),
            nn.Conv2d(hid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class _MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, k: int, s: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(True)
            )

        layers: list[nn.Module] = [cbr(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ]:
            for i in range(n):
                layers.append(_InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(cbr(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)


class MobileNetV2Backbone(nn.Module):
    """Encoder features at strides 2, 4, 8, 16, 32 (16, 24, 32, 96, 1280 channels)."""

    channels = (16, 24, 32, 96, 1280)

    def __init__(self) -> None:
        super().__init__()
        self.model = _MobileNetV2()

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.model.features):
            x = layer(x)
            if i in (1, 3, 6, 13, 18):
                out.append(x)
        return out


class IBNorm(nn.Module):
    """Batch norm on the first half of the channels, instance norm on the rest."""

    def __init__(self, c: int):
        super().__init__()
        self.nb = c // 2
        self.bnorm = nn.BatchNorm2d(self.nb, affine=True)
        self.inorm = nn.InstanceNorm2d(c - self.nb, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.bnorm(x[:, : self.nb]), self.inorm(x[:, self.nb :])], 1)


class ConvIBReLU(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        padding: int = 0,
        ibn: bool = True,
        relu: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding, bias=True)]
        if ibn:
            layers.append(IBNorm(cout))
        if relu:
            layers.append(nn.ReLU(True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SEBlock(nn.Module):
    def __init__(self, c: int, reduction: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(c, c // reduction, bias=False),
            nn.ReLU(True),
            nn.Linear(c // reduction, c, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class LRBranch(nn.Module):
    def __init__(self, backbone: MobileNetV2Backbone):
        super().__init__()
        enc = backbone.channels
        self.backbone = backbone
        self.se_block = SEBlock(enc[4], 4)
        self.conv_lr16x = ConvIBReLU(enc[4], enc[3], 5, 1, 2)
        self.conv_lr8x = ConvIBReLU(enc[3], enc[2], 5, 1, 2)
        self.conv_lr = ConvIBReLU(enc[2], 1, 3, 2, 1, ibn=False, relu=False)  # training only

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        enc2x, enc4x, _, _, enc32x = self.backbone(img)
        lr8x = self.conv_lr8x(_up(self.conv_lr16x(_up(self.se_block(enc32x), 2)), 2))
        return lr8x, enc2x, enc4x


class HRBranch(nn.Module):
    def __init__(self, hr: int, enc: tuple[int, ...]):
        super().__init__()
        self.tohr_enc2x = ConvIBReLU(enc[0], hr, 1)
        self.conv_enc2x = ConvIBReLU(hr + 3, hr, 3, 2, 1)
        self.tohr_enc4x = ConvIBReLU(enc[1], hr, 1)
        self.conv_enc4x = ConvIBReLU(2 * hr, 2 * hr, 3, 1, 1)
        self.conv_hr4x = nn.Sequential(
            ConvIBReLU(3 * hr + 3, 2 * hr, 3, 1, 1),
            ConvIBReLU(2 * hr, 2 * hr, 3, 1, 1),
            ConvIBReLU(2 * hr, hr, 3, 1, 1),
        )
        self.conv_hr2x = nn.Sequential(
            ConvIBReLU(2 * hr, 2 * hr, 3, 1, 1),
            ConvIBReLU(2 * hr, hr, 3, 1, 1),
            ConvIBReLU(hr, hr, 3, 1, 1),
            ConvIBReLU(hr, hr, 3, 1, 1),
        )
        self.conv_hr = nn.Sequential(
            ConvIBReLU(hr + 3, hr, 3, 1, 1),  # training only
            ConvIBReLU(hr, 1, 1, ibn=False, relu=False),
        )

    def forward(self, img: Tensor, enc2x: Tensor, enc4x: Tensor, lr8x: Tensor) -> Tensor:
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat([_up(img, 0.5), enc2x], 1))
        hr4x = self.conv_enc4x(torch.cat([hr4x, self.tohr_enc4x(enc4x)], 1))
        hr4x = self.conv_hr4x(torch.cat([hr4x, _up(lr8x, 2), _up(img, 0.25)], 1))
        return self.conv_hr2x(torch.cat([_up(hr4x, 2), enc2x], 1))


class FusionBranch(nn.Module):
    def __init__(self, hr: int, enc: tuple[int, ...]):
        super().__init__()
        self.conv_lr4x = ConvIBReLU(enc[2], hr, 5, 1, 2)
        self.conv_f2x = ConvIBReLU(2 * hr, hr, 3, 1, 1)
        self.conv_f = nn.Sequential(
            ConvIBReLU(hr + 3, hr // 2, 3, 1, 1), ConvIBReLU(hr // 2, 1, 1, ibn=False, relu=False)
        )

    def forward(self, img: Tensor, lr8x: Tensor, hr2x: Tensor) -> Tensor:
        lr2x = _up(self.conv_lr4x(_up(lr8x, 2)), 2)
        f2x = self.conv_f2x(torch.cat([lr2x, hr2x], 1))
        return torch.sigmoid(self.conv_f(torch.cat([_up(f2x, 2), img], 1)))


class MODNet(nn.Module):
    """``forward(img) -> matte`` (B, 1, H, W) in [0, 1]; img in [-1, 1], sides multiple of 32."""

    def __init__(self, hr_channels: int = 32):
        super().__init__()
        self.backbone = MobileNetV2Backbone()
        self.lr_branch = LRBranch(self.backbone)
        self.hr_branch = HRBranch(hr_channels, self.backbone.channels)
        self.f_branch = FusionBranch(hr_channels, self.backbone.channels)

    def forward(self, img: Tensor) -> Tensor:
        lr8x, enc2x, enc4x = self.lr_branch(img)
        hr2x = self.hr_branch(img, enc2x, enc4x, lr8x)
        return self.f_branch(img, lr8x, hr2x)
