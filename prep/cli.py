"""Command-line checks made before Hydra composes the config, for one-line errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Native libraries (mediapipe's TFLite/absl) print info and warnings to stderr; keep errors only.
NATIVE_QUIET_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}


def check_group_choices(argv: list[str], conf_dir: Path) -> str | None:
    """Return a one-line error when an override picks an option that a config group lacks.

    Hydra's own message for `dataset=nope` is a dozen lines; this says the same in one, with the
    choices. Only plain ``group=option`` overrides are checked (sweeps ``a,b`` check each option).
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        group = conf_dir / key
        if "." in key or "/" in key or not group.is_dir() or not value:
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):
            if choice and choice not in options:
                return f"unknown {key} {choice!r}; choose one of: {', '.join(options)}"
    return None


def precheck(conf_dir: Path) -> None:
    """Exit with a one-line error when the command line names an unknown group option."""
    for key, value in NATIVE_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    error = check_group_choices(sys.argv[1:], conf_dir)
    if error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
