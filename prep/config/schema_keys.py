"""Command-line overrides checked against the typed schema, each problem in one line.

Hydra reports an unknown key or a wrong type in five or six lines and, following its own hint,
``+fit_flame.w.lmkk=1`` is accepted and silently ignored. `SchemaKeys.check` reads one parsed
override against `prep.config.Config` (as an OmegaConf structured config, so types are checked
by the same code Hydra uses) and returns one line: the unknown key and the nearest valid one,
or the key, the value and the type it needs.
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

_KIND = (
    (BooleanNode, "true or false"),
    (IntegerNode, "an integer"),
    (FloatNode, "a number"),
    (StringNode, "a string"),
    (EnumNode, "one of its named values"),
)


class SchemaKeys:
    """The root schema's keys and types, for checking overrides before Hydra composes.

    Args:
        choices: the option chosen in each config group (``{"matting": "rvm"}``): a backend's
            settings (``matting.backend.*``) are those of the chosen option's dataclass
            (`prep.config.backends`); a group left out has no ``<group>.backend.*`` keys.
    """

    def __init__(self, choices: dict[str, str] | None = None) -> None:
        from prep.config import Config
        from prep.config.backends import SCHEMAS

        self.schema = OmegaConf.structured(Config)
        self.choices = {}
        for group, option in (choices or {}).items():
            if (group, option) in SCHEMAS:
                self.schema[group].backend = OmegaConf.structured(SCHEMAS[(group, option)])
                self.choices[group] = option
        # `_target_` is set by the option's YAML, never by hand: no hint points at it
        self.leaves = sorted(k for k in self._leaf_keys(self.schema, "") if "_target_" not in k)

    def _leaf_keys(self, node: Any, prefix: str) -> list[str]:
        keys = []
        if isinstance(node, DictConfig):
            for k in node:
                child = node._get_node(k)
                keys.append(f"{prefix}{k!s}")
                if isinstance(child, DictConfig):
                    keys += self._leaf_keys(child, f"{prefix}{k!s}.")
        return keys

    def nearest(self, key: str) -> str | None:
        """The valid key(s) closest to `key`: a key typed without its section (``n_shape``,
        ``w.lmk``), else the closest sibling, else the closest key anywhere."""
        ends = [k for k in self.leaves if k.endswith("." + key)]
        if ends:
            return " or ".join(ends[:3])
        parent = key.rpartition(".")[0]
        siblings = [k for k in self.leaves if k.rpartition(".")[0] == parent]
        for pool in (siblings, self.leaves):
            close = difflib.get_close_matches(key, pool, n=1, cutoff=0.6)
            if close:
                return close[0]
        return None

    def node(self, key: str) -> Any:
        """The schema node at `key`; None when some part of it is not in the schema; the string
        "list" when the key goes past the items of a list's default (the run's list may be
        longer: left to Hydra)."""
        node: Any = self.schema
        for part in key.split("."):
            if isinstance(node, ListConfig):
                if not part.isdigit() or int(part) >= len(node):
                    return "list"
                node = node._get_node(int(part))
            elif isinstance(node, DictConfig) and not node._is_missing() and part in node:
                node = node._get_node(part)
            else:
                return None
        return node

    def check(self, override: Any) -> str | None:
        """One line describing what is wrong with a parsed Hydra override, or None."""
        key = override.key_or_group
        sign = "+" if override.is_add() else "++" if override.is_force_add() else ""
        node = self.node(key)
        if node == "list":
            return None
        if node is None and (unknown := self._unknown_backend_key(key)):
            return unknown
        if node is None:
            hint = self.nearest(key)
            near = f"; did you mean {hint}?" if hint else ""
            where = "" if not sign else " (+ cannot add keys to avatar-prep's typed config)"
            return f"unknown key {sign}{key}{where}{near}"
        if override.is_delete():
            return f"~{key}: keys of the typed config cannot be removed; set a value instead"
        if override.is_add():
            return f"{key} already exists: drop the leading + ({key}=...)"
        if override.is_sweep_override():
            sweep = override.value()
            values = list(getattr(sweep, "list", []))  # ranges and intervals: numbers anyway
        else:
            values = [override.value()]
        for value in values:
            error = self._type_error(key, node, value)
            if error:
                return error
        return None

    def _unknown_backend_key(self, key: str) -> str | None:
        """For a key inside a backend's settings that the chosen backend lacks: the line that
        says which keys it has (None when a close one suggests a typo: `nearest` says it)."""
        group, _, rest = key.partition(".backend.")
        if not rest or "." in group or group not in self.choices:
            return None
        prefix = f"{group}.backend."
        fields = [k for k in self.leaves if k.startswith(prefix) and k != prefix + "_target_"]
        if difflib.get_close_matches(rest, [k[len(prefix) :] for k in fields], n=1, cutoff=0.6):
            return None
        takes = f"takes {', '.join(fields)}" if fields else "has no settings"
        return f"unknown key {key}: {group}={self.choices[group]} {takes}"

    def _type_error(self, key: str, node: Any, value: Any) -> str | None:
        trial = copy.deepcopy(self.schema)
        try:
            OmegaConf.update(trial, key, value, merge=True)
        except OmegaConfBaseException as e:
            if value is None:
                return f"{key}=null: this key needs a value"
            if _choices(e):
                return value_error(e, key, value)
            kind = next((k for t, k in _KIND if isinstance(node, t)), None)
            if kind is None:
                kind = "a list [a,b,...]" if isinstance(node, ListConfig) else "a group of keys"
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            return f"{key}={_show(value)}: expected {kind} ({text})"
        return None


_INVALID_CHOICE = re.compile(r"Invalid value '(.*)', expected one of \[(.*)\]")


def _choices(e: Exception) -> tuple[str, str] | None:
    """(the bad value, the valid values) when `e` is OmegaConf refusing an enum value."""
    m = _INVALID_CHOICE.search(str(e))
    return (m.group(1), m.group(2)) if m else None


def value_error(e: OmegaConfBaseException, key: str | None = None, value: Any = None) -> str:
    """One line for OmegaConf refusing a value; an invalid choice lists the valid ones.

    Args:
        e: the error OmegaConf raised (updating `key`, or converting the whole config).
        key: the dotted key that was set; None = the key the error names.
        value: the value given; None = the value the error names.
    """
    key = key or getattr(e, "full_key", None) or "config"
    if choices := _choices(e):
        bad, valid = choices
        if isinstance(value, list):
            return f"{key}={_show(value)}: {bad} is not one of {valid}"
        return f"{key}={bad}: use one of {valid}"
    text = (getattr(e, "msg", None) or str(e)).splitlines()
    given = "" if value is None else f"={_show(value)}"
    return f"{key}{given}: {text[0] if text else type(e).__name__}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value).replace("'", "")
