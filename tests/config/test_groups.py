"""Every option of every config group composes, and every backend's settings build its class
(issue 14 item 3): a YAML that names a missing schema, a `_target_` that names a moved class, or
settings the class no longer takes fail here rather than in a user's run.

Backends whose constructor loads something (parsing: the subject's dense mesh or BiSeNet's weights)
are checked by binding their constructor's signature to the stage's arguments instead; networks
that need licence-gated weights are never loaded (their classes load in ``__enter__``).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class

from prep.assets import ASSETS
from prep.config.backends import SCHEMAS, default_backends, instantiate
from prep.pipeline import StageContext, get_stage
from prep.subject import SubjectDir
from tests.conftest import REPO, compose

CONF = REPO / "conf"
OPTIONS = [
    (p.parent.name, p.stem)
    for p in sorted(CONF.glob("*/*.yaml"))
    if p.parent.name != "hydra"  # Hydra's own groups (launchers, logging) are Hydra's to check
]
BACKEND_GROUPS = sorted({group for group, _ in SCHEMAS})
BACKENDS = [(g, o) for g, o in OPTIONS if g in BACKEND_GROUPS]

# What each stage passes its backend after the settings (`prep.config.backends.instantiate`).
STAGE_ARGS = {
    "detect": lambda cfg, ctx: (cfg.detect,),
    "matting": lambda cfg, ctx: (None, "cpu"),
    "landmarks": lambda cfg, ctx: (None, "cpu"),
    "parsing": lambda cfg, ctx: (ctx,),
    "albedo": lambda cfg, ctx: (ctx,),
    "fit_3dmm_coarse": lambda cfg, ctx: (ctx,),
}
# The method each stage calls on its backend.
STAGE_CALLS = {
    "detect": "detect",
    "matting": "matte",
    "landmarks": "detect",
    "parsing": "labels",
    "albedo": "run",
    "fit_3dmm_coarse": "fit",
}
LOADS_IN_INIT = {"parsing"}


def test_the_groups_are_the_ones_the_readme_names():
    groups = {g for g, _ in OPTIONS}
    assert {"dataset", "stage", "logger", "trainer", "flame", *BACKEND_GROUPS} <= groups
    assert set(BACKEND_GROUPS) == set(STAGE_ARGS)
    assert len(OPTIONS) >= 40


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option):
    cfg = compose(f"{group}={option}")
    if group == "stage":
        assert cfg.stage.name == option
    if group in BACKEND_GROUPS:
        assert type(getattr(cfg, group).backend) is SCHEMAS[(group, option)]


def test_every_registered_backend_has_its_yaml():
    assert set(SCHEMAS) == set(BACKENDS)


@pytest.mark.parametrize(("group", "option"), BACKENDS, ids=[f"{g}={o}" for g, o in BACKENDS])
def test_every_backend_builds_its_class(group, option, tmp_path: Path):
    cfg = compose(f"{group}={option}", f"work_dir={tmp_path}", "logger=none")
    settings = getattr(cfg, group).backend
    assert settings.name == option
    cls = get_class(settings._target_)
    assert callable(getattr(cls, STAGE_CALLS[group], None)), f"{cls.__name__} has no call"
    ctx = StageContext(cfg, SubjectDir(tmp_path / "s"), group)
    args = STAGE_ARGS[group](cfg, ctx)
    if group in LOADS_IN_INIT:
        inspect.signature(cls).bind(settings, *args)
    else:
        assert isinstance(instantiate(settings, *args), cls)
    names = get_stage(group).assets(cfg)
    assert set(settings.assets()) <= set(names) and set(names) <= set(ASSETS)


def test_the_default_backends_are_those_the_config_composes():
    """`default_backends` (what the runner compares a missing asset against) reads the same
    defaults list as Hydra."""
    cfg = compose()
    assert {g: type(s) for g, s in default_backends().items()} == {
        g: type(getattr(cfg, g).backend) for g in BACKEND_GROUPS
    }


def test_a_stage_key_names_the_backend_not_its_class_path():
    """Moving a backend's class (its `_target_`) keeps finished stages; another option or another
    setting of the backend re-runs them."""
    import dataclasses

    from prep.pipeline import config_hash

    cfg = compose("matting=rvm")
    st = get_stage("matting")
    moved = dataclasses.replace(cfg.matting.backend, _target_="elsewhere.RvmMatter")
    key = config_hash(cfg, st)
    assert (
        config_hash(
            dataclasses.replace(cfg, matting=dataclasses.replace(cfg.matting, backend=moved)), st
        )
        == key
    )
    assert config_hash(compose("matting=rvm", "matting.backend.variant=resnet50"), st) != key
    assert (
        config_hash(compose("matting=modnet", "matting.refine=none", "matting.temporal=0.0"), st)
        != key
    )
