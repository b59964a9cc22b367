"""Every detect/matting config group composes into typed settings the stages accept."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from prep.pipeline import get_stage
from tests.conftest import compose


@pytest.mark.parametrize(
    ("overrides", "assets"),
    [
        ([], []),
        (["matting=rvm"], ["rvm_mobilenetv3"]),
        (["matting=rvm", "matting.backend.variant=resnet50"], ["rvm_resnet50"]),
        (["matting=modnet"], ["modnet"]),
        (["matting=selfie", "detect=dlib"], []),
    ],
)
def test_matting_groups_compose_and_declare_their_weights(overrides, assets):
    cfg = compose("logger=none", *overrides)
    assert get_stage("matting").assets(cfg) == assets
    assert cfg.crop.image_size == 512 and cfg.crop.mode == "static"


def test_group_values_reach_typed_config():
    cfg = compose("logger=none", "detect=dlib", "matting=modnet", "crop.mode=smooth")
    assert cfg.detect.backend.name == "dlib" and cfg.matting.backend.name == "modnet"
    assert cfg.matting.refine == "none" and cfg.crop.mode == "smooth"
    cfg = compose("logger=none")
    assert cfg.detect.backend.name == "mediapipe" and cfg.matting.refine == "guided"


def test_unknown_variant_is_refused_when_composing():
    with pytest.raises(ConfigCompositionException, match="matting.backend.variant=mobilenetv2"):
        compose("logger=none", "matting=rvm", "matting.backend.variant=mobilenetv2")
