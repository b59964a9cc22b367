"""DECA encoder: a checkpoint with DECA's E_flame key layout loads and runs; others are refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from prep.errors import MissingAssetError
from prep.track.deca import DECA_SPLIT, DecaEncoder, face_crops, load_deca_encoder


def _write_ckpt(path: Path, sd: dict) -> Path:
    torch.save({"E_flame": sd, "E_detail": {}, "D_detail": {}}, path)
    return path


def test_random_deca_checkpoint_loads_and_runs(tmp_path):
    torch.manual_seed(0)
    ref = DecaEncoder()
    sd = dict(ref.state_dict())
    sd["encoder.fc.weight"] = torch.zeros(1000, 2048)  # DECA's trunk keeps an unused classifier
    model = load_deca_encoder(_write_ckpt(tmp_path / "deca_model.tar", sd))
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        out, want = model(x), ref.eval()(x)
    assert {k: v.shape[1] for k, v in out.items()} == DECA_SPLIT
    torch.testing.assert_close(out["exp"], want["exp"])


def test_wrong_layout_is_refused(tmp_path):
    sd = {k: v for k, v in DecaEncoder().state_dict().items() if not k.startswith("layers.2")}
    with pytest.raises(MissingAssetError, match="layout differs"):
        load_deca_encoder(_write_ckpt(tmp_path / "bad.tar", sd))
    (tmp_path / "junk.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingAssetError, match="unreadable"):
        load_deca_encoder(tmp_path / "junk.tar")


def test_face_crops_centre_the_landmarks():
    img = np.zeros((300, 400, 3), np.uint8)
    img[100:200, 150:250] = 255
    pts = np.array([[150.0, 100.0], [250.0, 200.0]])
    crop = face_crops([img], pts[None])[0]
    assert crop.shape == (3, 224, 224)
    assert crop[:, 112, 112].min() == 1.0 and crop[:, 5, 5].max() == 0.0


@pytest.mark.weights
def test_real_deca_checkpoint():
    root = Path(os.environ.get("AVATAR_PREP_ASSETS", Path.home() / ".cache/avatar-prep/assets"))
    path = root / "deca" / "deca_model.tar"
    if not path.exists():
        pytest.skip(f"DECA checkpoint not present: {path}")
    model = load_deca_encoder(path)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    assert out["shape"].abs().max() < 100
