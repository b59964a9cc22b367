"""Config values are checked before any stage runs, each problem in one line (issue 16 item 8,
issue 12's bad input): on the old engine `fit_flame.w.lmk=-1` ran every upstream stage and then
died in a Cholesky traceback, and `device=cuda` without a GPU failed after all upstream stages."""

from __future__ import annotations

import pytest
import torch

from prep.config.validate import cross_errors, range_errors, validate_config
from prep.errors import BadConfigError
from tests.cli_helpers import launch, one_error_line
from tests.conftest import SHARED_DATA, compose
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401

CLIP = SHARED_DATA / "clips" / "c03_german_anchor_512_20s.mp4"


@pytest.mark.parametrize(
    "groups",
    [
        ["dataset=demo"],
        ["dataset=insta"],
        ["dataset=hdtf", "matting=rvm", "parsing=bisenet", "landmarks=fan", "flame=flame2023"],
        ["dataset=custom", "matting=modnet", "detect=dlib", "albedo=intrinsic_anything"],
    ],
)
def test_every_shipped_config_is_valid(groups):
    cfg = compose(*groups)
    assert range_errors(cfg) == [] and cross_errors(cfg) == []


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("fit_flame.w.lmk=-1", "fit_flame.w.lmk=-1.0 must be > 0"),
        ("fit_flame.w.lmk=0", "fit_flame.w.lmk=0.0 must be > 0"),
        ("fit_flame.w.smooth_pose=-4", "fit_flame.w.smooth_pose=-4.0 must be >= 0"),
        ("flame.n_shape=0", "flame.n_shape=0 must be at least 1"),
        ("matting.clip_low=0.99", "must be below clip_high"),
        ("detect.min_score=1.5", "detect.min_score=1.5 must be in [0, 1]"),
        ("crop.image_size=4", "crop.image_size=4 must be at least 16"),
        ("fit_3dmm_fine.w.photo=-1", "fit_3dmm_fine.w.photo=-1.0 must be >= 0"),
        ("fit_flame.phases.1.iters=-2", "fit_flame.phases.1.iters=-2 must be >= 0"),
        ("extract_frames.jpeg_quality=0", "must be in 1..100"),
    ],
)
def test_out_of_range_values_are_one_line(override, says):
    with pytest.raises(BadConfigError, match=None) as e:
        validate_config(compose(override))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_zero_weight_switches_a_term_off():
    validate_config(compose("fit_flame.w.smooth_pose=0", "fit_flame.w.dense=0"))


def _fit_args(tmp_path, assets):
    if not CLIP.exists():
        pytest.skip(f"test media not present: {CLIP}")
    keys = ("flame2020", "flame_lmk_embedding_eyes")
    return [
        "dataset=custom",
        f"dataset.video={CLIP}",
        "subject=v",
        "extract_frames.max_frames=5",
        "stage=fit_flame",
        f"work_dir={tmp_path}",
        "logger=none",
        *[f"assets.{k}={assets[k]}" for k in keys],
    ]


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("fit_flame.w.lmk=-1", "fit_flame.w.lmk=-1.0 must be > 0"),
        ("flame.n_shape=400", "flame.n_shape=400 but generic_model.pkl has 300 identity"),
        ("flame.n_expr=150", "flame.n_expr=150 but generic_model.pkl has 100 expression"),
    ],
)
def test_bad_values_stop_before_any_stage(tmp_path, tiny_flame_assets, override, says):  # noqa: F811
    line = one_error_line(launch(*_fit_args(tmp_path, tiny_flame_assets), override))
    assert says in line
    assert not (tmp_path / "custom" / "v" / "frames").exists(), "a stage ran before the check"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_gpu_stops_before_any_stage(tmp_path, tiny_flame_assets):  # noqa: F811
    line = one_error_line(launch(*_fit_args(tmp_path, tiny_flame_assets), "device=cuda"))
    assert "device=cuda but torch finds no CUDA GPU" in line and "device=cpu" in line
    assert not (tmp_path / "custom" / "v" / "frames").exists()
