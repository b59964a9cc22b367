"""Closed choices are `str` enums, refused at compose time in one line that lists the valid values
(issue 14 item 4), and the YAML files hold only what differs from the schema's defaults.

Before, each choice was a `str` checked by hand where a stage happened to read it: a typo in
`fit_flame.phases.0.params` surfaced as a ValueError traceback inside the fit, one in
`fit_flame.photo.refine` was silently ignored, and `logger.mode=ofline` failed only once a stage
started its run.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.nodes import EnumNode

from prep.config import Config
from prep.config.backends import SCHEMAS
from prep.config.schema_keys import SchemaKeys
from prep.errors import BadConfigError
from tests.conftest import REPO, compose


def _choice_keys() -> list[tuple[str, type[Enum], bool, dict[str, str]]]:
    """(dotted key, enum type, is a list, the group options it needs) of every closed choice in
    the root schema and in every backend's settings."""
    out = []

    def walk(node, prefix: str, choices: dict[str, str]) -> None:
        for k in node:
            child, key = node._get_node(k), f"{prefix}{k}"
            if isinstance(child, EnumNode):
                out.append((key, child._metadata.ref_type, False, choices))
            elif isinstance(child, ListConfig):
                element = child._metadata.element_type
                if isinstance(element, type) and issubclass(element, Enum):
                    out.append((key, element, True, choices))
                for i in range(len(child)):
                    if isinstance(child._get_node(i), DictConfig):
                        walk(child._get_node(i), f"{key}.{i}.", choices)
            elif isinstance(child, DictConfig) and not child._is_missing():
                walk(child, f"{key}.", choices)

    walk(OmegaConf.structured(Config), "", {})
    for (group, option), schema in SCHEMAS.items():
        walk(OmegaConf.structured(schema), f"{group}.backend.", {group: option})
    return out


CHOICES = _choice_keys()


def test_the_schema_has_its_choices_as_enums():
    keys = {k for k, *_ in CHOICES}
    for key in (
        "trainer.precision",
        "logger.mode",
        "crop.pad",
        "export.formats",
        "bfm.variant",
        "matting.backend.variant",
        "detect.backend.model",
    ):
        assert key in keys, key
    assert len(keys) >= 20


@pytest.mark.parametrize(
    ("key", "enum", "is_list", "choices"), CHOICES, ids=[c[0] for c in CHOICES]
)
def test_a_bad_choice_is_one_line_listing_the_valid_ones(key, enum, is_list, choices):
    valid = ", ".join(enum.__members__)
    arg = f"{key}=[bogus]" if is_list else f"{key}=bogus"
    line = SchemaKeys(choices).check(OverridesParser.create().parse_overrides([arg])[0])
    assert line is not None and "\n" not in line
    assert line.endswith(f"bogus is not one of {valid}" if is_list else f"use one of {valid}")


@pytest.mark.parametrize(
    ("key", "enum", "is_list", "choices"), CHOICES, ids=[c[0] for c in CHOICES]
)
def test_every_valid_choice_is_taken(key, enum, is_list, choices):
    parser, keys = OverridesParser.create(), SchemaKeys(choices)
    for name in enum.__members__:
        arg = f"{key}=[{name}]" if is_list else f"{key}={name}"
        assert keys.check(parser.parse_overrides([arg])[0]) is None, arg


def test_an_interpolated_bad_choice_is_one_line(monkeypatch):
    """The pre-compose check sees `${...}` unresolved; `to_typed` turns the schema's refusal of
    the resolved value into the same line."""
    monkeypatch.setenv("PREP_TEST_REFINE", "soft")
    with pytest.raises(BadConfigError) as e:
        compose("matting.refine=${oc.env:PREP_TEST_REFINE}")
    assert str(e.value) == "matting.refine=soft: use one of guided, none"


def test_precision_as_a_number_is_the_same_choice():
    """`trainer.precision=32` arrives as an int (the old str field took it as "32")."""
    assert compose("trainer.precision=32").trainer.precision == "32"
    assert compose("trainer.precision=64-true").trainer.precision == "64-true"


def _leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in node.items():
        if k == "defaults" or (prefix == "" and k == "hydra"):
            continue
        if isinstance(v, dict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _yaml_files() -> list[Path]:
    skip = ("dataset", "hydra")  # datasets have no schema defaults to repeat; hydra is Hydra's
    files = [p for p in sorted((REPO / "conf").glob("*/*.yaml")) if p.parent.name not in skip]
    return [REPO / "conf" / "config.yaml", *files]


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(REPO / "conf")))
def test_yaml_holds_only_overrides(path):
    """A YAML line that repeats the dataclass default is a second place to change it."""
    schema = OmegaConf.structured(Config)
    section = "" if path.name == "config.yaml" else path.parent.name
    body = yaml.safe_load(path.read_text()) or {}
    for key, value in _leaves(body):
        full = f"{section}.{key}" if section else key
        default = OmegaConf.select(schema, full, throw_on_missing=False)
        if isinstance(default, Enum):
            default = default.value
        if isinstance(default, DictConfig | ListConfig):
            default = OmegaConf.to_container(default, enum_to_str=True)
        assert value != default, f"{path.name}: {full}: {value!r} is the schema's default"
