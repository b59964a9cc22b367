"""MODNet: the image demo's inference path at any input size, and the authors' network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from prep.config.perception import MattingConfig, ModnetMattingConfig
from prep.vision.matting import make_matter, modnet_input_size
from prep.vision.matting.modnet import MODNet
from tests.authors_code import authors_module

PHOTOS = (
    "p02_frontal_smile_ffhq00018.png",  # 1024 x 1024: both sides above 512
    "p08_expr_surprise_hires_exp4.jpg",  # 1718 x 2444: landscape, long side rescaled
    "p11_profile_aflw00181.jpg",  # 450 x 450: both sides below 512
)


def _random_modnet(seed: int = 0) -> MODNet:
    torch.manual_seed(seed)
    net = MODNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _demo_matte(net, im: Image.Image, ref_size: int = 512) -> np.ndarray:
    """ZHKKKe/MODNet demo/image_matting/colab/inference.py lines 62-103, step by step: ToTensor
    (uint8 / 255) and Normalize(0.5, 0.5); the size rule of lines 83-95; area resize in and out.
    `net(x)` returns the matte (our MODNet, or a wrapper of the authors' ``forward(x, True)[2]``).
    """
    im = np.array(im)[:, :, 0:3]
    x = torch.from_numpy(im).permute(2, 0, 1).contiguous().float().div(255)
    x = x.sub(0.5).div(0.5)[None]
    _, _, im_h, im_w = x.shape
    if max(im_h, im_w) < ref_size or min(im_h, im_w) > ref_size:
        if im_w >= im_h:
            im_rh, im_rw = ref_size, int(im_w / im_h * ref_size)
        else:
            im_rw, im_rh = ref_size, int(im_h / im_w * ref_size)
    else:
        im_rh, im_rw = im_h, im_w
    im_rw, im_rh = im_rw - im_rw % 32, im_rh - im_rh % 32
    x = F.interpolate(x, size=(im_rh, im_rw), mode="area")
    with torch.no_grad():
        matte = net(x)
    return F.interpolate(matte, size=(im_h, im_w), mode="area")[0, 0].numpy()


def _checkpoint(sd: dict, path: Path) -> Path:
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # saved from nn.DataParallel
    return path


@pytest.mark.parametrize(
    ("hw", "want"),
    [
        ((512, 512), (512, 512)),  # inside the range: unchanged
        ((1024, 1024), (512, 512)),  # both above: short side to 512
        ((1718, 2444), (512, 704)),  # int(2444 / 1718 * 512) = 728 -> 704
        ((450, 300), (768, 512)),  # both below, portrait: int(450 / 300 * 512) = 768
        ((300, 700), (288, 672)),  # one above, one below: only rounded to multiples of 32
    ],
)
def test_input_size_follows_the_demo(hw, want):
    assert modnet_input_size(*hw, 512) == want


def test_matting_equals_the_demo_path_at_any_size(shared_data, tmp_path):
    """Our matter on the real photos (three sizes, none 512) equals the demo's path around the
    same network; before, cv2 area on uint8 in and bilinear out differed by up to 0.28 alpha."""
    net = _random_modnet()
    path = _checkpoint(net.state_dict(), tmp_path / "modnet.ckpt")
    with make_matter(MattingConfig(backend=ModnetMattingConfig(ref_size=512)), path) as m:
        for name in PHOTOS:
            im = Image.open(shared_data / "photos" / name).convert("RGB")
            got = m.matte(np.array(im))
            want = _demo_matte(net, im)
            assert got.shape == want.shape == (im.size[1], im.size[0])
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)


def _authors_modnet():
    """facexlib's MODNet: ZHKKKe/MODNet src/models/modnet.py with the MobileNetV2 backbone (the
    classes are the same source, compared by AST; only the backbone switch is gone)."""
    return authors_module("facexlib.matting.modnet").MODNet(backbone_pretrained=False).eval()


@pytest.mark.equiv
def test_our_layout_is_the_authors():
    theirs = {k: tuple(v.shape) for k, v in _authors_modnet().state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in MODNet().state_dict().items()}
    assert ours == theirs


@pytest.mark.equiv
def test_full_path_equals_the_authors_network_and_demo(shared_data, tmp_path):
    """The authors' network with random weights, saved as their DataParallel checkpoint: our
    loader + matter on the real photos against their network inside the demo's steps."""
    theirs = _authors_modnet()
    torch.manual_seed(1)
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    path = _checkpoint(theirs.state_dict(), tmp_path / "modnet_webcam_portrait_matting.ckpt")
    with make_matter(MattingConfig(backend=ModnetMattingConfig(ref_size=512)), path) as m:
        for name in PHOTOS:
            im = Image.open(shared_data / "photos" / name).convert("RGB")
            want = _demo_matte(lambda x: theirs(x, True)[2], im)
            np.testing.assert_allclose(m.matte(np.array(im)), want, atol=1e-5, err_msg=name)
