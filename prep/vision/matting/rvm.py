"""Robust Video Matting (Lin et al. 2021) in plain torch, laid out so the published checkpoints
(`rvm_mobilenetv3.pth`, `rvm_resnet50.pth`) load with `load_state_dict(strict=True)`.

Module names follow the published state dict: `backbone` (torchvision-style MobileNetV3-Large or
ResNet-50 with a dilated last stage), `aspp` (LR-ASPP), `decoder` (recurrent ConvGRU decoder),
`project_mat`, `project_seg`, `refiner` (deep guided filter). Input: RGB in [0, 1], (B, 3, H, W).
The recurrent state (four tensors) is carried across frames by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class _ConvBNAct(nn.Sequential):
    """conv (0), batch norm (1), optional activation (2): torchvision's Conv2dNormActivation."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
        eps: float = 1e-3,
    ):
        pad = (k - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=eps, momentum=0.01),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class _InvertedResidualV3(nn.Module):
    def __init__(
        self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, stride: int, dilation: int
    ):
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        stride = 1 if dilation > 1 else stride
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_ConvBNAct(cin, exp, 1, act=act))
        layers.append(_ConvBNAct(exp, exp, k, stride, dilation, groups=exp, act=act))
        if se:
            layers.append(_SqueezeExcite(exp, _divisible(exp // 4)))
        layers.append(_ConvBNAct(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


# (in, kernel, expanded, out, squeeze-excite, hard-swish, stride, dilation), RVM's setting.
_MBV3_LARGE = [
    (16, 3, 16, 16, False, False, 1, 1),
    (16, 3, 64, 24, False, False, 2, 1),
    (24, 3, 72, 24, False, False, 1, 1),
    (24, 5, 72, 40, True, False, 2, 1),
    (40, 5, 120, 40, True, False, 1, 1),
    (40, 5, 120, 40, True, False, 1, 1),
    (40, 3, 240, 80, False, True, 2, 1),
    (80, 3, 200, 80, False, True, 1, 1),
    (80, 3, 184, 80, False, True, 1, 1),
    (80, 3, 184, 80, False, True, 1, 1),
    (80, 3, 480, 112, True, True, 1, 1),
    (112, 3, 672, 112, True, True, 1, 1),
    (112, 5, 672, 160, True, True, 2, 2),
    (160, 5, 960, 160, True, True, 1, 2),
    (160, 5, 960, 160, True, True, 1, 2),
]


class MobileNetV3LargeEncoder(nn.Module):
    """Features at strides 2, 4, 8, 16 (16, 24, 40, 960 channels)."""

    mean: Tensor  # ImageNet normalisation buffers
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_ConvBNAct(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [_InvertedResidualV3(*c) for c in _MBV3_LARGE]
        layers.append(_ConvBNAct(160, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (1, 3, 6, 16):
                out.append(x)
        return out


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, dilation: int, down: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )
            if down
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet50Encoder(nn.Module):
    """torchvision ResNet-50 layout, last stage dilated (stride 16); no input normalisation."""

    # stages registered by name in __init__ (setattr keeps torchvision's state-dict keys)
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, dil = 64, 1
        for name, width, n, stride, dilate in [
            ("layer1", 64, 3, 1, False),
            ("layer2", 128, 4, 2, False),
            ("layer3", 256, 6, 2, False),
            ("layer4", 512, 3, 2, True),
        ]:
            prev = dil
            if dilate:
                dil, stride = dil * stride, 1
            blocks = [_Bottleneck(cin, width, stride, prev, stride != 1 or cin != width * 4)]
            blocks += [_Bottleneck(width * 4, width, 1, dil, False) for _ in range(n - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            cin = width * 4

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = F.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(F.max_pool2d(f1, 3, 2, 1))
        f3 = self.layer2(f2)
        f4 = self.layer4(self.layer3(f3))
        return [f1, f2, f3, f4]


class LRASPP(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.aspp1 = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
        )
        self.aspp2 = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.aspp1(x) * self.aspp2(x)


class ConvGRU(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.ih = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.Sigmoid())
        self.hh = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.Tanh())

    def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
        if h is None:
            h = torch.zeros_like(x)
        r, z = self.ih(torch.cat([x, h], 1)).split(self.c, 1)
        c = self.hh(torch.cat([x, r * h], 1))
        return (1 - z) * h + z * c


class _Bottleneck4(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.gru = ConvGRU(c // 2)

    def forward(self, x: Tensor, r: Tensor | None) -> tuple[Tensor, Tensor]:
        a, b = x.split(self.c // 2, 1)
        r = self.gru(b, r)
        return torch.cat([a, r], 1), r


class _Upsampling(nn.Module):
    def __init__(self, cin: int, cskip: int, csrc: int, cout: int):
        super().__init__()
        self.cout = cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin + cskip + csrc, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
        )
        self.gru = ConvGRU(cout // 2)

    def forward(self, x: Tensor, f: Tensor, s: Tensor, r: Tensor | None) -> tuple[Tensor, Tensor]:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(torch.cat([x[:, :, : s.shape[2], : s.shape[3]], f, s], 1))
        a, b = x.split(self.cout // 2, 1)
        r = self.gru(b, r)
        return torch.cat([a, r], 1), r


class _Output(nn.Module):
    def __init__(self, cin: int, csrc: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin + csrc, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
        )

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x[:, :, : s.shape[2], : s.shape[3]], s], 1))


class RecurrentDecoder(nn.Module):
    def __init__(self, feat: list[int], dec: list[int]):
        super().__init__()
        self.decode4 = _Bottleneck4(feat[3])
        self.decode3 = _Upsampling(feat[3], feat[2], 3, dec[0])
        self.decode2 = _Upsampling(dec[0], feat[1], 3, dec[1])
        self.decode1 = _Upsampling(dec[1], feat[0], 3, dec[2])
        self.decode0 = _Output(dec[2], 3, dec[3])

    def forward(self, s0: Tensor, f: list[Tensor], rec: list[Tensor | None]):
        pool = lambda t: F.avg_pool2d(t, 2, 2, ceil_mode=True, count_include_pad=False)  # noqa: E731
        s1 = pool(s0)
        s2 = pool(s1)
        s3 = pool(s2)
        x4, r4 = self.decode4(f[3], rec[3])
        x3, r3 = self.decode3(x4, f[2], s3, rec[2])
        x2, r2 = self.decode2(x3, f[1], s2, rec[1])
        x1, r1 = self.decode1(x2, f[0], s1, rec[0])
        return self.decode0(x1, s0), [r1, r2, r3, r4]


class Projection(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class DeepGuidedFilterRefiner(nn.Module):
    """Upsamples the low-resolution output with a learned guided filter."""

    def __init__(self, hid: int = 16):
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, 3, padding=1, bias=False, groups=4)
        self.box_filter.weight.data[...] = 1 / 9
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hid, hid, 1, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU(True),
            nn.Conv2d(hid, hid, 1, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU(True),
            nn.Conv2d(hid, 4, 1, bias=True),
        )

    def forward(self, fine: Tensor, base: Tensor, fgr: Tensor, pha: Tensor, hid: Tensor):
        fine_x = torch.cat([fine, fine.mean(1, keepdim=True)], 1)
        base_x = torch.cat([base, base.mean(1, keepdim=True)], 1)
        base_y = torch.cat([fgr, pha], 1)
        mean_x, mean_y = self.box_filter(base_x), self.box_filter(base_y)
        cov_xy = self.box_filter(base_x * base_y) - mean_x * mean_y
        var_x = self.box_filter(base_x * base_x) - mean_x * mean_x
        A = self.conv(torch.cat([cov_xy, var_x, hid], 1))
        b = mean_y - A * mean_x
        size = fine.shape[2:]
        A = F.interpolate(A, size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size, mode="bilinear", align_corners=False)
        out = A * fine_x + b
        return out[:, :3], out[:, 3:]


class MattingNetwork(nn.Module):
    """RVM. ``forward(src, rec, downsample_ratio) -> (fgr, pha, rec)``.

    Args (forward):
        src: (B, 3, H, W) RGB in [0, 1].
        rec: four recurrent states (None at the first frame).
        downsample_ratio: the network runs at this fraction of (H, W); the deep guided filter
            brings the result back to full resolution.

    Returns:
        fgr (B, 3, H, W), pha (B, 1, H, W) in [0, 1], and the new recurrent states.
    """

    def __init__(self, variant: str = "mobilenetv3"):
        super().__init__()
        if variant == "mobilenetv3":
            self.backbone: nn.Module = MobileNetV3LargeEncoder()
            self.aspp = LRASPP(960, 128)
            self.decoder = RecurrentDecoder([16, 24, 40, 128], [80, 40, 32, 16])
        elif variant == "resnet50":
            self.backbone = ResNet50Encoder()
            self.aspp = LRASPP(2048, 256)
            self.decoder = RecurrentDecoder([64, 256, 512, 256], [128, 64, 32, 16])
        else:
            raise ValueError(f"unknown RVM variant {variant!r}")
        self.project_mat = Projection(16, 4)
        self.project_seg = Projection(16, 1)
        self.refiner = DeepGuidedFilterRefiner()

    def forward(self, src: Tensor, rec: list[Tensor | None], downsample_ratio: float = 1.0):
        small = src
        if downsample_ratio != 1:
            small = F.interpolate(
                src,
                scale_factor=downsample_ratio,
                mode="bilinear",
                align_corners=False,
                recompute_scale_factor=False,
            )
        f = self.backbone(small)
        f[3] = self.aspp(f[3])
        hid, rec = self.decoder(small, f, rec)
        fgr_res, pha = self.project_mat(hid).split([3, 1], 1)
        if downsample_ratio != 1:
            fgr_res, pha = self.refiner(src, small, fgr_res, pha, hid)
        return (fgr_res + src).clamp(0, 1), pha.clamp(0, 1), rec
