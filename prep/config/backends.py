"""Swappable backends: each option of a stage's config group builds its class from its own settings.

A backend is a class (a detector, a matting network, a landmark model, ...) and a small dataclass
of its own settings: a `Backend` subclass whose `_target_` names the class, registered with
`backend` as option ``<name>`` of the stage's group. ``conf/<stage>/<name>.yaml`` puts it under
``<stage>.backend`` (its defaults list names ``/schema/<stage>/<name>@backend``), so
``matting=rvm`` composes ``matting.backend`` as a typed `RvmMattingConfig` (unknown keys and bad
values are refused when Hydra composes, as everywhere else) and the stage calls
``instantiate(cfg.matting.backend, ...)`` to get an ``RvmMatter``. The stage's other settings
(``matting.*``) are shared by its backends; an option's YAML may override them too (rvm: no
guided filter). README.md ("Adding a backend") walks through one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class Backend:
    """Settings of one backend. `_target_` is the class `instantiate` builds with them; `name` is
    the option's name in its group (recorded in the stage's outputs)."""

    name: ClassVar[str] = ""
    _target_: str = MISSING

    def assets(self) -> list[str]:
        """Names of the external files (`prep.assets`) the backend loads; none by default."""
        return []


B = TypeVar("B", bound=type[Backend])

# (group, option) -> the option's settings dataclass, filled by `backend`.
SCHEMAS: dict[tuple[str, str], type[Backend]] = {}
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def backend(group: str, name: str) -> Callable[[B], B]:
    """Class decorator: register a `Backend` dataclass as option `name` of config group `group`
    (the YAML ``conf/<group>/<name>.yaml`` names it as ``/schema/<group>/<name>@backend``)."""

    def deco(cls: B) -> B:
        cls.name = name
        SCHEMAS[(group, name)] = cls
        return cls

    return deco


def register_backends(cs: ConfigStore) -> None:
    """Store every registered backend's settings as ``schema/<group>/<name>`` for the YAMLs."""
    for (group, name), cls in SCHEMAS.items():
        cs.store(group=f"schema/{group}", name=name, node=cls)


def default_options(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """The option of each config group that ``conf/config.yaml``'s defaults list picks."""
    import yaml

    root = yaml.safe_load((conf_dir / "config.yaml").read_text())
    return {k: v for d in root.get("defaults", []) if isinstance(d, dict) for k, v in d.items()}


def default_backends() -> dict[str, Backend]:
    """The settings of each stage's default backend (``{"matting": SelfieMattingConfig()}``)."""
    groups = {group for group, _ in SCHEMAS}
    return {g: SCHEMAS[(g, o)]() for g, o in default_options().items() if g in groups}


def instantiate(settings: Backend, *args: Any, **kwargs: Any) -> Any:
    """The class ``settings._target_`` names, built as ``cls(settings, *args, **kwargs)``.

    Each stage documents what it passes after the settings (its own section, the weights' path,
    the device): every backend of a stage takes the same arguments.
    """
    from hydra.utils import get_class

    return get_class(settings._target_)(settings, *args, **kwargs)
