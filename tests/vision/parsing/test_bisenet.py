"""BiSeNet: loads face-parsing.PyTorch's key layout; bad checkpoints give one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prep.errors import MissingAssetError
from prep.vision.parsing.bisenet import BiSeNet, load_bisenet, parse_images

# Key names and shapes of the published 79999_iter.pth (face-parsing.PyTorch model.py/resnet.py).
PUBLISHED_KEYS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.weight": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.running_mean": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv.conv.weight": (64, 128, 3, 3),
}


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in BiSeNet().state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue  # older checkpoints lack it
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.1
    return state


def test_published_key_layout():
    state = BiSeNet().state_dict()
    for k, shape in PUBLISHED_KEYS.items():
        assert tuple(state[k].shape) == shape, k
    assert not any(k.startswith("sp.") for k in state)  # the published model has no spatial path


def test_random_checkpoint_in_published_layout_loads_and_parses(tmp_path):
    state = {f"module.{k}": v for k, v in _random_state().items()}  # DataParallel prefix too
    path = tmp_path / "79999_iter.pth"
    torch.save(state, path)
    net = load_bisenet(path)
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(v, state[f"module.{k}"])
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (96, 80, 3), dtype=np.uint8) for _ in range(2)]
    labels = parse_images(net, imgs, size=128)
    assert labels.shape == (2, 96, 80) and labels.dtype == np.uint8
    assert labels.max() < 19
    with torch.no_grad():  # same image twice -> same labels (eval mode, no batch statistics)
        again = parse_images(net, imgs[:1], size=128)
    np.testing.assert_array_equal(again[0], labels[0])


def test_corrupt_checkpoint_is_one_clear_line(tmp_path):
    path = tmp_path / "79999_iter.pth"
    path.write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(MissingAssetError) as e:
        load_bisenet(path)
    msg = str(e.value)
    assert "\n" not in msg and "bisenet" in msg and "unreadable checkpoint" in msg
    assert "assets.bisenet" in msg


def test_foreign_state_dict_and_missing_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(MissingAssetError, match="not face-parsing BiSeNet weights"):
        load_bisenet(path)
    with pytest.raises(MissingAssetError, match="not found"):
        load_bisenet(tmp_path / "absent.pth")
