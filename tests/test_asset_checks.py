"""`stage=assets` opens every model file (running nothing in it) and says present, corrupt,
refused or missing (issue 16 item 2: garbage and malicious files were listed as "present")."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from prep.asset_checks import check_asset
from tests.bad_input.media import SystemPayload, corrupt_file, hostile_checkpoint, hostile_npy
from tests.cli_helpers import launch
from tests.conftest import compose
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401
from tests.fixtures.synthetic_bfm import write_adnerf, write_synthetic_front_mat


def _table(proc) -> dict[str, str]:
    rows = {}
    for line in proc.stdout.splitlines()[1:]:
        name, status = line.split()[:2]
        rows[name] = status
    return rows


@pytest.fixture
def assets(tmp_path, tiny_flame_assets):  # noqa: F811
    """An assets folder with good, garbage and hostile files; `marker` must never appear."""
    root, marker = tmp_path / "assets", tmp_path / "pwned"
    for sub in ("flame", "bfm", "matting", "parsing", "deca"):
        (root / sub).mkdir(parents=True)
    shutil.copy(tiny_flame_assets["flame2020"], root / "flame" / "generic_model.pkl")
    shutil.copy(tiny_flame_assets["flame_lmk_embedding_eyes"], root / "flame")
    corrupt_file(root / "flame" / "flame2023.pkl", 3000)  # garbage
    (root / "flame" / "FLAME_masks.pkl").write_bytes(
        pickle.dumps({"face": SystemPayload(marker)}, protocol=2)
    )
    write_synthetic_front_mat(root / "bfm" / "BFM_model_front.mat")
    write_adnerf(root / "bfm")
    hostile_npy(root / "bfm" / "3DMM_info.npy", marker)
    from prep.vision.matting.rvm import MattingNetwork

    torch.save(MattingNetwork("mobilenetv3").state_dict(), root / "matting" / "rvm_mobilenetv3.pth")
    hostile_checkpoint(root / "matting" / "rvm_resnet50.pth", marker)
    torch.save(
        {"conv.weight": torch.zeros(3)}, root / "matting" / "modnet_webcam_portrait_matting.ckpt"
    )
    corrupt_file(root / "parsing" / "79999_iter.pth", 5000)
    (root / "deca" / "deca_model.tar").write_bytes(b"")
    return root, marker


def test_assets_table_opens_every_file(assets):
    root, marker = assets
    proc = launch("stage=assets", f"assets.root={root}")
    assert proc.returncode == 0, proc.stderr
    rows = _table(proc)
    assert not marker.exists(), "a model file's code ran"
    expect = {
        "flame2020": "present",
        "flame_lmk_embedding_eyes": "present",
        "flame2023": "corrupt",
        "flame_masks": "refused",
        "bfm_front": "present",
        "bfm_adnerf": "refused",
        "rvm_mobilenetv3": "present",
        "rvm_resnet50": "refused",
        "modnet": "corrupt",  # a checkpoint of another network
        "bisenet": "corrupt",
        "deca": "corrupt",  # empty file
        "deep3dface": "missing",
    }
    assert {k: rows[k] for k in expect} == expect
    text = proc.stdout
    assert "posix.system" in text and "300 shape + 100 expression" in text


def test_mat_and_binary_layouts(tmp_path, compose_cfg):
    bad_mat = tmp_path / "front.mat"
    scipy.io.savemat(bad_mat, {"meanshape": np.zeros((1, 30))})
    (tmp_path / "Exp_Pca.bin").write_bytes(np.int32(5).tobytes() + b"\0" * 12)
    cfg = compose_cfg(
        f"assets.bfm_front={bad_mat}", f"assets.bfm_exp_pca={tmp_path / 'Exp_Pca.bin'}"
    )
    st = check_asset(cfg, "bfm_front")
    assert st.status == "corrupt" and "missing idBase" in st.detail
    st = check_asset(cfg, "bfm_exp_pca")
    assert st.status == "corrupt" and "does not fit Exp_Pca.bin" in st.detail
    good = tmp_path / "good.mat"
    write_synthetic_front_mat(good)
    assert check_asset(compose(f"assets.bfm_front={good}"), "bfm_front").status == "present"


def test_checks_are_cached_per_file_version(tmp_path, compose_cfg, tiny_flame_assets):  # noqa: F811
    """The runner's pre-flight and the stage's own load do not parse one file twice."""
    model = tmp_path / "m.pkl"
    shutil.copy(tiny_flame_assets["flame2020"], model)
    cfg = compose_cfg(f"assets.flame2020={model}")
    first = check_asset(cfg, "flame2020")
    assert check_asset(cfg, "flame2020") is first
    corrupt_file(model, 4000, seed=3)  # replaced: new size and mtime, checked again
    assert check_asset(cfg, "flame2020").status == "corrupt"


def test_missing_file_is_missing(tmp_path, compose_cfg):
    cfg = compose_cfg(f"assets.root={tmp_path}")
    st = check_asset(cfg, "bisenet")
    assert (
        st.status == "missing" and st.error is not None and Path(st.path).name == "79999_iter.pth"
    )


def test_fan_dir_is_any_folder_with_face_alignments_two_files(tmp_path, compose_cfg):
    """FAN's weights are the two files face-alignment 1.5 loads, by exact name (from its URL
    tables, face_alignment/api.py `models_urls['2DFAN-4']` and detection/sfd/sfd_detector.py
    `models_urls['s3fd']`), in any plain folder; the table once crashed on an existing folder."""
    fan, s3fd = "2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"
    from prep.assets import ASSETS

    asset = ASSETS["fan_dir"]
    assert fan in asset.description and s3fd in asset.description and fan in asset.url
    assert "any plain folder" in asset.description and "$TORCH_HOME" not in asset.description
    folder = tmp_path / "models"  # not a hub/checkpoints folder
    folder.mkdir()
    (folder / fan).write_bytes(b"weights")
    cfg = compose_cfg(f"assets.fan_dir={folder}")
    st = check_asset(cfg, "fan_dir")
    assert st.status == "missing" and f"loads exactly {s3fd}, not found" in st.detail
    (folder / s3fd).write_bytes(b"weights")
    st = check_asset(cfg, "fan_dir")
    assert st.status == "present" and st.detail == f"{fan}, {s3fd}"
