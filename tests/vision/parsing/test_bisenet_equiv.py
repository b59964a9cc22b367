"""BiSeNet against the authors' architecture from PyPI (marker ``equiv``).

facexlib's ``parsing/bisenet.py`` + ``parsing/resnet.py`` are zllrunning/face-parsing.PyTorch's
``model.py`` + ``resnet.py`` (same modules, names and forward; compared by reading both): only
the weight initialisation (and the torchvision download in ``Resnet18.init_weight``) is gone and
``BiSeNetOutput`` also returns its features. Its ``forward`` returns (out, out16, out32).
"""

from __future__ import annotations

import pytest
import torch

from prep.vision.parsing.bisenet import BiSeNet, load_bisenet
from tests.authors_code import authors_module

pytestmark = pytest.mark.equiv


def _authors_bisenet():
    torch.manual_seed(0)
    net = authors_module("facexlib.parsing.bisenet").BiSeNet(num_class=19)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_our_layout_is_the_authors():
    theirs = {k: tuple(v.shape) for k, v in _authors_bisenet().state_dict().items()}
    assert {k: tuple(v.shape) for k, v in BiSeNet().state_dict().items()} == theirs


def test_released_layout_loads_strictly_and_gives_the_authors_logits(tmp_path):
    theirs = _authors_bisenet()
    torch.save(theirs.state_dict(), tmp_path / "79999_iter.pth")
    ours = load_bisenet(tmp_path / "79999_iter.pth")
    x = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)[0], rtol=1e-5, atol=1e-5)
