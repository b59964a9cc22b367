"""Access to the authors' own code from PyPI for the equivalence tests (marker ``equiv``).

`make equiv` installs face-alignment and facexlib (with --no-deps, see README "Install notes")
into a separate environment and runs ``pytest -m equiv`` with ``AVATAR_PREP_EQUIV=1``: there a
missing package fails the test; elsewhere (the default environment) the test is skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import pytest

REQUIRED = os.environ.get("AVATAR_PREP_EQUIV") == "1"


def authors_module(name: str) -> types.ModuleType:
    """Import `name` from the authors' package, or skip (fail under ``AVATAR_PREP_EQUIV=1``)."""
    top = name.split(".")[0]
    try:
        if top == "facexlib" and "facexlib" not in sys.modules:
            _facexlib_without_init()
        return importlib.import_module(name)
    except ImportError as e:
        if REQUIRED:
            pytest.fail(f"{name} must be importable in the equivalence run: {e}")
        pytest.skip(f"{top} not installed (`make equiv` installs the authors' code): {e}")


def _facexlib_without_init() -> None:
    """facexlib's package __init__ imports its detectors, which need torchvision (whose local
    wheel does not match our CPU torch); its matting and parsing networks need only torch, so the
    top-level package is registered without running that __init__."""
    spec = importlib.util.find_spec("facexlib")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'facexlib'")
    pkg = types.ModuleType("facexlib")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["facexlib"] = pkg
