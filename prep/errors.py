"""Typed errors raised by library code.

Only the entry point (`prep.app`) turns these into one line for the user; library code raises them
with a message that already says what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class PrepError(Exception):
    """Base class: an expected failure with a one-line, user-facing message."""


class BadConfigError(PrepError):
    """A config value is wrong (unknown name, out of range, inconsistent keys)."""


class BadInputError(PrepError):
    """Input data is unusable: broken video, empty folder, wrong point count, ..."""


class NoUsableFramesError(BadInputError):
    """Every frame of a subject was flagged invalid, so a stage has nothing to work on."""


class MissingInputError(PrepError):
    """An upstream stage's output is missing.

    Args:
        stage_needed: the stage whose output is missing (the one to run first).
        path: the file or folder that was looked for.
        message: optional extra context.
    """

    def __init__(self, stage_needed: str, path: Path | str, message: str = ""):
        self.stage_needed = stage_needed
        self.path = Path(path)
        text = message or f"missing {self.path}"
        super().__init__(f"{text}; run `stage={stage_needed}` first (or drop only=true)")


class MissingAssetError(PrepError):
    """An external, user-supplied file (model weights, embeddings) is absent or unreadable.

    Args:
        asset: registry name of the asset (see `prep.assets`).
        path: where it was looked for.
        url: where to obtain it.
        config_key: the config key that overrides the path.
        reason: what is wrong with the file (empty: it is not there).
        status: "missing", "corrupt" (unreadable, wrong keys or shapes) or "refused" (it could
            run code when loaded); default: missing without a reason, corrupt with one.
    """

    def __init__(
        self,
        asset: str,
        path: Path | str,
        url: str = "",
        config_key: str = "",
        reason: str = "",
        status: str = "",
    ):
        self.asset, self.path, self.url, self.config_key = asset, Path(path), url, config_key
        self.status = status or ("corrupt" if reason else "missing")
        what = reason or "not found"
        parts = [f"{asset}: {what} at {self.path}"]
        if url:
            parts.append(f"get it from {url}")
        if config_key:
            parts.append(f"or point `{config_key}=<path>` at your copy")
        super().__init__("; ".join(parts))


class MissingDependencyError(PrepError):
    """An optional Python package is not installed."""

    def __init__(self, package: str, extra: str = "", hint: str = ""):
        hint = hint or (f"pip install -e '.[{extra}]'" if extra else f"pip install {package}")
        super().__init__(f"optional package `{package}` is not installed; run `{hint}`")
        self.package = package


class SubjectLockedError(PrepError):
    """Another job holds the lock of this subject directory."""


class UnmetRequestError(PrepError):
    """Stages the user asked for (by name, backend or model choice) could not run."""
