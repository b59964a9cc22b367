"""Deep3DFaceRecon regressor: published key layout, checkpoint loading, alignment warp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prep.errors import MissingAssetError
from prep.track.bfm_align import aligned_from_source, apply_affine
from prep.vision.deep3dface import Deep3dFaceNet, aligned_batch, load_deep3dface


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = Deep3dFaceNet()
    with torch.no_grad():
        for p in net.final_layers.parameters():
            p.normal_(0, 0.01)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("d3d") / "epoch_20.pth"
    torch.save({"net_recon": net.state_dict(), "epoch": 20}, path)
    return path, net.eval()


def test_state_dict_has_the_published_key_layout():
    sd = Deep3dFaceNet().state_dict()
    assert sd["backbone.conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["backbone.layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["backbone.layer3.5.bn3.running_var"].shape == (1024,)
    assert sd["backbone.layer4.2.conv2.weight"].shape == (512, 512, 3, 3)
    assert [sd[f"final_layers.{i}.weight"].shape[0] for i in range(7)] == [80, 64, 80, 3, 27, 2, 1]
    assert not any(k.startswith("backbone.fc") for k in sd)
    assert (
        sum(v.numel() for k, v in sd.items() if "num_batches" not in k and "running" not in k)
        == 23_508_032 + 2048 * 257 + 257
    )  # torchvision resnet50 minus fc, plus the heads


def test_checkpoint_loads_and_reproduces_the_network(checkpoint):
    path, net = checkpoint
    loaded = load_deep3dface(path)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
        assert loaded(x).shape == (1, 257)


def test_wrong_checkpoint_is_a_clear_asset_error(tmp_path):
    bad = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": {"fc.weight": torch.zeros(3)}}, bad)
    with pytest.raises(MissingAssetError, match="not a Deep3DFaceRecon resnet50 checkpoint"):
        load_deep3dface(bad)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MissingAssetError, match="unreadable checkpoint"):
        load_deep3dface(bad)


def test_aligned_batch_warps_landmark_positions_consistently():
    # a bright dot at a landmark must land where the landmark's aligned coordinates say
    img = np.zeros((300, 300, 3), np.uint8)
    img[148:153, 98:103] = 255
    tp = np.array([[300, 300, 0.8, 120.0, 160.0]])
    M = aligned_from_source(tp)
    out = aligned_batch([img], M)[0].mean(0).numpy()
    y, x = np.unravel_index(out.argmax(), out.shape)
    expected = apply_affine(M, np.array([[[100.0, 150.0]]]))[0, 0]
    assert abs(x - expected[0]) <= 1.5 and abs(y - expected[1]) <= 1.5
