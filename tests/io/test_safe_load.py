"""Hostile model files: every loader of a pickle-bearing file refuses code and runs none of it.

Each payload, if unpickled by ``pickle.load`` / ``np.load(allow_pickle=True)`` /
``torch.load(weights_only=False)``, creates a marker file; the tests assert the marker never
appears and the loader raises one clear error naming the refused global.
"""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from prep.errors import BadInputError, MissingAssetError
from prep.io.safe_load import UnsafePickleError, load_checkpoint, load_object_npy, load_pickle
from prep.models.bfm_io import load_adnerf
from prep.models.flame_io import load_flame_model, load_landmark_embedding
from tests.fixtures.synthetic_bfm import write_adnerf
from tests.fixtures.synthetic_flame import build_tiny_flame_dict, write_flame_pickle


class _System:
    """Runs ``touch <marker>`` through os.system when unpickled (pickles as posix.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    """Creates <marker> through builtins.eval when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


PAYLOADS = {
    "top_level_reduce": lambda m, base: _System(m),
    "nested_in_dict": lambda m, base: {**base, "payload": {"inner": [_System(m)]}},
    "builtins_eval": lambda m, base: {**base, "payload": _Eval(m)},
}
REFUSED = r"refus\w+ .*(posix\.system|builtins\.eval|__builtin__\.eval)"


def _npy(path: Path, obj) -> Path:
    np.save(path, np.array(obj, dtype=object), allow_pickle=True)
    return path


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("name", ["3DMM_info.npy", "keys_info.npy", "topology_info.npy"])
def test_adnerf_files_refused(tmp_path, kind, name):
    folder = tmp_path / "bfm"
    write_adnerf(folder)
    marker = tmp_path / "pwned"
    base = np.load(folder / name, allow_pickle=True).item()  # our own fixture: trusted
    _npy(folder / name, PAYLOADS[kind](marker, base))
    with pytest.raises(MissingAssetError, match=REFUSED) as e:
        load_adnerf(folder / "3DMM_info.npy")
    assert not marker.exists(), "the pickle's code ran"
    assert e.value.status == "refused" and "\n" not in str(e.value)
    assert "assets.bfm_adnerf" in str(e.value)


@pytest.mark.parametrize("kind", PAYLOADS)
def test_flame_pickle_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    d = PAYLOADS[kind](marker, build_tiny_flame_dict())
    path = tmp_path / "generic_model.pkl"
    if isinstance(d, dict):
        write_flame_pickle(path, d)  # chumpy references too, like FLAME2020
    else:
        path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(UnsafePickleError, match=REFUSED):
        load_flame_model(path, use_cache=False)
    assert not marker.exists()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_landmark_embedding_refused(tmp_path, tiny_flame_assets, kind):
    marker = tmp_path / "pwned"
    base = load_object_npy(tiny_flame_assets["flame_lmk_embedding_eyes"], kinds=("torch",))
    path = _npy(tmp_path / "landmark_embedding_with_eyes.npy", PAYLOADS[kind](marker, base))
    with pytest.raises(UnsafePickleError, match=REFUSED):
        load_landmark_embedding(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_checkpoint_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "rvm.pth"
    torch.save(PAYLOADS[kind](marker, {"conv.weight": torch.zeros(2)}), path)
    with pytest.raises(MissingAssetError, match=REFUSED) as e:
        load_checkpoint(path, "rvm_mobilenetv3")
    assert not marker.exists()
    assert e.value.status == "refused" and "assets.rvm_mobilenetv3" in str(e.value)


@pytest.mark.parametrize("kind", PAYLOADS)
def test_plain_pickle_refused(tmp_path, kind):
    """FLAME_masks.pkl and any other numpy-only pickle."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(PAYLOADS[kind](marker, {"face": np.arange(3)}), protocol=2)
    with pytest.raises(UnsafePickleError, match=REFUSED):
        load_pickle(data, "FLAME_masks.pkl")
    assert not marker.exists()


def test_numpy_only_kind_refuses_torch_and_chumpy(tmp_path):
    """A file declared numpy-only may not bring in torch or chumpy globals either."""
    data = pickle.dumps({"t": torch.zeros(2)})
    with pytest.raises(UnsafePickleError, match="torch"):
        load_pickle(data, "x.pkl")
    assert isinstance(load_pickle(data, "x.pkl", kinds=("torch",))["t"], torch.Tensor)


def test_garbage_is_corrupt_not_a_traceback(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(MissingAssetError, match="unreadable checkpoint") as e:
        load_checkpoint(junk, "bisenet")
    assert e.value.status == "corrupt"
    npy = tmp_path / "3DMM_info.npy"
    npy.write_bytes(os.urandom(4096))
    with pytest.raises(BadInputError, match="not an .npy file"):
        load_object_npy(npy)


def test_real_files_still_load(tmp_path, tiny_flame_assets):
    folder = tmp_path / "bfm"
    ref = write_adnerf(folder)
    bfm = load_adnerf(folder / "3DMM_info.npy")
    np.testing.assert_array_equal(bfm.keypoints, ref["keypoints"])
    assert bfm.tri.shape == ref["tri"].shape
    emb = load_landmark_embedding(tiny_flame_assets["flame_lmk_embedding_eyes"])
    assert emb.n_points == 70
    sd = {"w": torch.arange(4.0)}
    torch.save(sd, tmp_path / "ok.pth")
    assert torch.equal(load_checkpoint(tmp_path / "ok.pth", "bisenet")["w"], sd["w"])
