"""Matting: guided-filter refinement, temporal smoothing, RVM/MODNet checkpoint layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from prep.config.perception import MattingConfig, ModnetMattingConfig, RvmMattingConfig
from prep.errors import BadConfigError, MissingAssetError
from prep.vision.matting import load_state_dict, make_matter
from prep.vision.matting.modnet import MobileNetV2Backbone, MODNet
from prep.vision.matting.refine import MattePostprocess, guided_filter
from prep.vision.matting.rvm import MattingNetwork, MobileNetV3LargeEncoder, ResNet50Encoder


def test_guided_filter_matches_opencv_reference():
    rng = np.random.default_rng(0)
    guide = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    src = rng.random((96, 128), dtype=np.float32)
    ref = cv2.ximgproc.guidedFilter(guide.astype(np.float32) / 255, src, 4, 1e-3)
    out = guided_filter(guide, src, 4, 1e-3, subsample=1)
    np.testing.assert_allclose(out[8:-8, 8:-8], ref[8:-8, 8:-8], atol=1e-4)


def _disk(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:n, :n]
    truth = ((xx - n / 2) ** 2 + (yy - n / 2) ** 2 < (n / 3) ** 2).astype(np.float32)
    img = np.where(truth[..., None] > 0, [200, 150, 120], [40, 60, 200]).astype(np.uint8)
    return img, truth


def test_guided_refinement_snaps_blocky_mask_to_edges():
    """A 4x-upsampled segmentation (like selfie's 256 output on a 512 crop) gets sharp edges."""
    img, truth = _disk(512)
    small = cv2.resize(truth, (128, 128), interpolation=cv2.INTER_AREA)
    blocky = cv2.resize(small, (512, 512), interpolation=cv2.INTER_LINEAR)
    cfg = MattingConfig()
    post = MattePostprocess(
        "guided",
        cfg.guided_radius,
        cfg.guided_eps,
        0.0,
        cfg.clip_low,
        cfg.clip_high,
        cfg.guided_subsample,
    )
    refined = post(img, blocky)
    wrong = lambda a: (np.abs(a - truth) > 0.1).mean()  # noqa: E731
    assert wrong(refined) < 0.25 * wrong(blocky)


def test_temporal_smoothing_removes_flicker_but_follows_motion():
    img, truth = _disk(128)
    rng = np.random.default_rng(1)
    post = MattePostprocess("none", 6, 1e-3, 0.5, 0.0, 1.0)
    raw = [np.clip(truth + rng.normal(0, 0.03, truth.shape), 0, 1) for _ in range(10)]
    out = [post(img, a) for a in raw]
    flick_raw = np.mean([np.abs(a - b).mean() for a, b in zip(raw[1:], raw[:-1], strict=True)])
    flick_out = np.mean([np.abs(a - b).mean() for a, b in zip(out[1:], out[:-1], strict=True)])
    assert flick_out < 0.75 * flick_raw
    moved = np.roll(truth, 20, axis=1)
    after = post(img, moved)
    assert np.abs(after - moved).max() < 0.05  # no ghost of the previous position


def test_bad_refinement_settings_are_config_errors():
    with pytest.raises(BadConfigError, match="matting.temporal"):
        MattePostprocess("none", 6, 1e-3, 1.0, 0.0, 1.0)


def test_backbones_match_torchvision_parameter_counts():
    """torchvision's published totals minus their classifier heads: MobileNetV3-Large
    5,483,032 - 2,511,080; ResNet-50 25,557,032 - 2,049,000; MobileNetV2 3,504,872 - 1,281,000."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(MobileNetV3LargeEncoder()) == 5_483_032 - 2_511_080
    assert count(ResNet50Encoder()) == 25_557_032 - 2_049_000
    assert count(MobileNetV2Backbone()) == 3_504_872 - 1_281_000


def _save(sd: dict, path: Path) -> Path:
    torch.save(sd, path)
    return path


@pytest.mark.parametrize(
    ("variant", "n_params", "keys"),
    [
        (
            "mobilenetv3",
            3_748_633,
            {
                "backbone.features.16.0.weight": (960, 160, 1, 1),
                "backbone.features.4.block.2.fc1.weight": (24, 72, 1, 1),
                "aspp.aspp2.1.weight": (128, 960, 1, 1),
                "decoder.decode4.gru.ih.0.weight": (128, 128, 3, 3),
                "refiner.box_filter.weight": (4, 1, 3, 3),
            },
        ),
        (
            "resnet50",
            26_890_461,
            {
                "backbone.layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
                "aspp.aspp1.0.weight": (256, 2048, 1, 1),
                "decoder.decode3.conv.0.weight": (128, 771, 3, 3),
            },
        ),
    ],
)
def test_rvm_published_layout_loads_and_runs(tmp_path, variant, n_params, keys):
    """Published RVM sizes: 3.749 M (MobileNetV3) / 26.890 M (ResNet-50) parameters."""
    torch.manual_seed(0)
    net = MattingNetwork(variant)
    sd = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == n_params
    for k, shape in keys.items():
        assert tuple(sd[k].shape) == shape, k
    path = _save(sd, tmp_path / f"rvm_{variant}.pth")
    cfg = MattingConfig(backend=RvmMattingConfig(variant=variant, downsample_ratio=0.5))
    rgb = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    with make_matter(cfg, path) as m:
        a1 = m.matte(rgb)
        assert m.rec[0] is not None and m.rec[3].shape[-2:] == (2, 3)  # state at 1/16 of 32x48
    assert a1.shape == (64, 96) and a1.dtype == np.float32
    assert a1.min() >= 0 and a1.max() <= 1
    # The recurrent state changes the next frame's output; a fresh state reproduces frame 1.
    src = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    net.eval()
    with torch.inference_mode():
        f1, _, rec = net(src, [None] * 4, 0.5)
        f2, _, _ = net(src, rec, 0.5)
        f3, _, _ = net(src, [None] * 4, 0.5)
    assert torch.equal(f1, f3) and not torch.allclose(f1, f2)


def test_modnet_published_layout_loads_from_dataparallel_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = MODNet()
    sd = net.state_dict()
    assert "lr_branch.backbone.model.features.18.0.weight" in sd  # backbone registered twice
    assert tuple(sd["hr_branch.conv_hr4x.0.layers.1.bnorm.weight"].shape) == (32,)
    assert tuple(sd["lr_branch.se_block.fc.0.weight"].shape) == (320, 1280)
    path = _save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "modnet.ckpt")
    with make_matter(MattingConfig(backend=ModnetMattingConfig(ref_size=64)), path) as m:
        a = m.matte(np.full((80, 100, 3), 128, np.uint8))
    assert a.shape == (80, 100) and a.min() >= 0 and a.max() <= 1


def test_corrupt_and_mismatched_checkpoints_are_one_clear_error(tmp_path):
    bad = tmp_path / "rvm.pth"
    bad.write_bytes(b"\x80\x02not a checkpoint" * 10)
    with pytest.raises(MissingAssetError, match="unreadable checkpoint"):
        load_state_dict(MattingNetwork("mobilenetv3"), bad, "rvm_mobilenetv3")
    wrong = _save(MODNet().state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(MissingAssetError, match="does not match the rvm_mobilenetv3 layout"):
        load_state_dict(MattingNetwork("mobilenetv3"), wrong, "rvm_mobilenetv3")
    # A checkpoint holding arbitrary pickled objects is refused by weights_only loading.
    evil = tmp_path / "evil.pth"
    torch.save({"x": object()}, evil)
    with pytest.raises(MissingAssetError, match="rvm_mobilenetv3"):
        load_state_dict(MattingNetwork("mobilenetv3"), evil, "rvm_mobilenetv3")
