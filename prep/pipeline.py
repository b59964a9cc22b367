"""Stage registry and engine: dependency order, skip-if-done manifests, resume helpers.

A stage is a function ``run(ctx) -> StageResult`` registered with `register_stage`, declaring the
stages it needs, the config sections that change its output, and the paths it writes. Stages talk
only through files in the subject directory, so any stage can be re-run alone or resumed.

A finished stage leaves ``.manifests/<stage>.json`` recording the hash of its config sections, the
fingerprints of its inputs (the manifests of the stages it needs, or the source file), its version
and the file count of each folder it wrote. A later run skips the stage when all of these still
match; it re-runs on any difference, when a written folder lost files, or with ``force=true``. The
manifest is deleted before a stage starts, so a run killed halfway is never taken as done; a run
that fails having touched none of its outputs puts it back (the outputs are still the old ones).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prep import __version__
from prep.errors import BadConfigError, MissingInputError
from prep.io.files import TMP_PREFIX, nan_for_null, read_json, write_json
from prep.io.fingerprint import content_fingerprint, file_fingerprint  # noqa: F401 (re-export)
from prep.subject import SubjectDir

if TYPE_CHECKING:
    from prep.config import Config
    from prep.logger import ExperimentLogger

log = logging.getLogger(__name__)

# Derived config sections a stage may declare besides the top-level ones: "intrinsics" is the
# camera a fit uses (top-level fx fy cx cy, else the dataset's defaults); "sequence" whether the
# frames follow each other in time (dataset.sequence; null: a video is, an image folder is judged
# by detect); "same_person" whether a photo collection shares one identity (no effect on a video).
INTRINSICS = ("fx", "fy", "cx", "cy")
# Dataset keys that do not change extracted frames: the stage plan, the default intrinsics, how
# the frames relate (declared by the stages they change), and the source's path as typed (the
# source fingerprint holds the resolved path, size and mtime: `clip.mp4` and `./clip.mp4` agree).
_DATASET_NOT_FRAMES = (
    "plan",
    "provided",
    "default_subject",
    "sequence",
    "same_person",
    "video",
    "images",
    "root",
    *INTRINSICS,
)
# The name a section is hashed under, where it was renamed with its content unchanged, so that
# finished stages still skip: the stage-named sections were `frames`, `tracker` and `lmdb`.
_HASHED_AS = {"extract_frames": "frames", "fit_flame": "tracker", "pack_lmdb": "lmdb"}


@dataclass
class StageResult:
    """What a stage reports when it finishes.

    Attributes:
        n_frames: frames the stage covered.
        n_skipped: frames skipped because their outputs already existed (resume).
        n_flagged: frames flagged invalid (no face, occluded, ...).
        metrics: scalar metrics; saved in the manifest and logged.
        headline: key of `metrics` that a sweep minimises (e.g. "lmk_rmse_px").
    """

    n_frames: int = 0
    n_skipped: int = 0
    n_flagged: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    headline: str | None = None


@dataclass
class StageContext:
    """Everything a stage receives: typed config, the subject's paths, the logger."""

    cfg: Config
    subject: SubjectDir
    stage: str
    force: bool = False
    logger: ExperimentLogger | None = None

    @property
    def device(self) -> str:
        return self.cfg.device

    def fresh_outputs(self, folders: list[Path]) -> int:
        """Keep per-frame outputs in `folders` only if made under this config and these inputs.

        Per-frame stages resume by skipping frames whose files exist; that is right only when
        those files came from the same config and inputs. This records the stage's config hash,
        input fingerprints and version beside the manifest and empties `folders` when they
        changed (or with force). Returns the number of files removed.
        """
        from prep.resume import outputs_for

        st = get_stage(self.stage)
        key = {
            "config": config_hash(self.cfg, st),
            "inputs": input_fingerprints(self.cfg, self.subject, st),
            "version": st.version,
        }
        marker = self.subject.manifest_dir / f"{self.stage}.resume.json"
        return outputs_for(marker, key, folders, self.force)

    def asset(self, name: str) -> Path:
        """Resolve the path of an external asset, raising MissingAssetError when absent."""
        from prep.assets import resolve_asset

        return resolve_asset(self.cfg, name)


@dataclass(frozen=True)
class Stage:
    """A registered stage (see `register_stage`)."""

    name: str
    run: Callable[[StageContext], StageResult]
    needs: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    version: int = 1
    uses: tuple[str, ...] = ()
    writes: Callable[[SubjectDir], list[Path]] | None = None
    assets: Callable[[Config], list[str]] | None = None
    fingerprint: Callable[[Config], dict[str, Any]] | None = None
    check: Callable[[Config, SubjectDir], None] | None = None


# The built-in stage modules (prep/stages/<name>.py), imported on first use by `get_stage`.
BUILTIN_STAGES = (
    "extract_frames",
    "detect",
    "crop",
    "matting",
    "landmarks",
    "parsing",
    "iris",
    "albedo",
    "fit_flame",
    "fit_3dmm_coarse",
    "fit_3dmm_fine",
    "pack_lmdb",
    "import_tracking",
    "export",
    "report",
    "download",
)

_REGISTRY: dict[str, Stage] = {}


def register_stage(
    name: str,
    needs: tuple[str, ...] = (),
    config: tuple[str, ...] = (),
    version: int = 1,
    writes: Callable[[SubjectDir], list[Path]] | None = None,
    assets: Callable[[Config], list[str]] | None = None,
    fingerprint: Callable[[Config], dict[str, Any]] | None = None,
    uses: tuple[str, ...] = (),
    check: Callable[[Config, SubjectDir], None] | None = None,
) -> Callable[[Callable[[StageContext], StageResult]], Callable[[StageContext], StageResult]]:
    """Register ``run(ctx) -> StageResult`` as stage `name`.

    Args:
        name: stage name, as typed in ``stage=<name>``.
        needs: stages whose outputs this stage reads.
        config: config sections that change this stage's output, and nothing else: top-level
            sections, or "intrinsics" (the camera: fx fy cx cy, else the dataset's defaults),
            "sequence" (dataset.sequence as it applies), "same_person" (dataset.same_person).
        version: bump when the stage's output changes for the same inputs and config.
        writes: paths (files or folders) the stage writes; folders' file counts are checked
            before a finished stage is skipped, so a deleted output file triggers a re-run.
        assets: asset names (see `prep.assets`) the stage needs for a given config; checked
            before any stage of the plan starts.
        fingerprint: extra input fingerprint for stages that read outside the subject folder
            (the source video's size and mtime).
        uses: stages whose outputs this stage reads when they exist (albedo uses the FLAME fit
            when there is one); they are not run for it, but their re-runs re-run it.
        check: validates the stage's external input (the source video decodes, ...) and raises
            a `PrepError`; the runner calls it before any stage of the plan removes anything.
    """

    def deco(fn: Callable[[StageContext], StageResult]) -> Callable[[StageContext], StageResult]:
        _REGISTRY[name] = Stage(
            name,
            fn,
            needs=tuple(needs),
            config=tuple(config),
            version=version,
            uses=tuple(uses),
            writes=writes,
            assets=assets,
            fingerprint=fingerprint,
            check=check,
        )
        return fn

    return deco


def stage_names() -> list[str]:
    """Names of the built-in stages and of any stage registered by other code."""
    return list(BUILTIN_STAGES) + [n for n in _REGISTRY if n not in BUILTIN_STAGES]


def registered_stages() -> dict[str, Stage]:
    """Every stage, by name (imports all built-in stage modules: use `get_stage` for one)."""
    for name in stage_names():
        get_stage(name)
    return dict(_REGISTRY)


def get_stage(name: str) -> Stage:
    """The stage called `name`, importing its built-in module on first use."""
    if name not in _REGISTRY and name in BUILTIN_STAGES:
        importlib.import_module(f"prep.stages.{name}")
    if name not in _REGISTRY:
        raise BadConfigError(f"unknown stage {name!r}; known: {', '.join(stage_names())}")
    return _REGISTRY[name]


def upstream_closure(target: str) -> list[str]:
    """`target` and every stage it transitively needs, in dependency order."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise BadConfigError(f"stage dependency cycle through {name!r}")
        visiting.add(name)
        for dep in get_stage(name).needs:
            visit(dep)
        visiting.discard(name)
        order.append(name)

    visit(target)
    return order


# ---- manifests ------------------------------------------------------------------------------


def _section_value(cfg: Config, key: str) -> Any:
    from prep.datasets.sequence import declared_sequence

    if key == "intrinsics":
        return {k: _or(getattr(cfg, k), getattr(cfg.dataset, k)) for k in INTRINSICS}
    if key == "sequence":  # null and true are one for a video
        return declared_sequence(cfg.dataset)
    if key == "same_person":  # a video is fitted with one identity whatever it says
        return cfg.dataset.same_person and declared_sequence(cfg.dataset) is not True
    section = getattr(cfg, key)
    is_instance = dataclasses.is_dataclass(section) and not isinstance(section, type)
    value = dataclasses.asdict(section) if is_instance else section
    if key == "dataset":
        value = {k: v for k, v in value.items() if k not in _DATASET_NOT_FRAMES}
    if isinstance(value, dict) and isinstance(value.get("backend"), dict):
        # a backend by its option's name, not its class's path: moving the class re-runs nothing
        settings = {k: v for k, v in value["backend"].items() if k != "_target_"}
        value["backend"] = {"name": section.backend.name, **settings}
    return value


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def config_hash(cfg: Config, stage: Stage) -> str:
    """Hash of the config sections that change `stage`'s output, and of nothing else.

    Only the stage's declared sections count: the camera intrinsics change only the stages that
    declare "intrinsics" (and, through their manifests, the stages that read their outputs).
    """
    values = {_HASHED_AS.get(k, k): _section_value(cfg, k) for k in stage.config}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def input_fingerprints(cfg: Config, subject: SubjectDir, stage: Stage) -> dict[str, Any]:
    """Fingerprints of a stage's inputs: its upstream manifests, plus any external source."""
    fps: dict[str, Any] = {}
    for dep in stage.needs + stage.uses:
        path = subject.manifest_path(dep)
        fps[dep] = hashlib.sha1(path.read_bytes()).hexdigest()[:16] if path.exists() else None
    if stage.fingerprint is not None:
        fps.update(stage.fingerprint(cfg))
    if stage.assets is not None and (names := stage.assets(cfg)):
        from prep.assets import asset_path

        fps["assets"] = {n: content_fingerprint(asset_path(cfg, n)) for n in names}
    return fps


def writes_state(subject: SubjectDir, stage: Stage) -> tuple | None:
    """What `stage` has written, as (path, file count, newest mtime) rows; None if undeclared.

    The counts go into the manifest; a failed run compares the whole state before and after:
    equal means the failure touched none of the outputs.
    """
    if stage.writes is None:
        return None
    rows = []
    for p in stage.writes(subject):
        if p.is_dir():
            stats = [
                e.stat().st_mtime_ns
                for e in os.scandir(p)
                if e.is_file() and not e.name.startswith(TMP_PREFIX)
            ]
            rows.append((p, len(stats), max(stats, default=0)))
        else:
            rows.append((p, int(p.exists()), p.stat().st_mtime_ns if p.exists() else 0))
    return tuple(rows)


def _written_counts(subject: SubjectDir, stage: Stage) -> dict[str, int]:
    rows = writes_state(subject, stage) or ()
    return {str(p.relative_to(subject.root)): n for p, n, _ in rows}


def read_manifest(subject: SubjectDir, stage: str) -> dict[str, Any] | None:
    """A stage's manifest (its metrics' nulls read back as NaN), or None when absent or broken."""
    path = subject.manifest_path(stage)
    try:
        man = read_json(path)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if isinstance(man, dict) and "metrics" in man:
        man["metrics"] = nan_for_null(man["metrics"])
    return man


def is_done(cfg: Config, subject: SubjectDir, stage: Stage) -> tuple[bool, str]:
    """Whether `stage` finished with the current config and inputs; else why not."""
    man = read_manifest(subject, stage.name)
    if man is None:
        return False, "not run yet"
    if man.get("version") != stage.version:
        return False, "stage code changed"
    if man.get("config_hash") != config_hash(cfg, stage):
        return False, "config changed"
    if man.get("inputs") != input_fingerprints(cfg, subject, stage):
        return False, "inputs changed"
    if man.get("written", {}) != _written_counts(subject, stage):
        return False, "outputs missing"
    return True, "done"


def write_manifest(
    cfg: Config, subject: SubjectDir, stage: Stage, result: StageResult, started: float
) -> dict[str, Any]:
    man = {
        "stage": stage.name,
        # Unique per run: stages fed by this one re-run after it re-runs, even when the rest of
        # the manifest happens to come out identical (same second, same duration).
        "run_id": uuid.uuid4().hex[:12],
        "version": stage.version,
        "code_version": __version__,
        "config_hash": config_hash(cfg, stage),
        "config": {k: _section_value(cfg, k) for k in stage.config},
        "inputs": input_fingerprints(cfg, subject, stage),
        "written": _written_counts(subject, stage),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 3),
        "n_frames": result.n_frames,
        "n_skipped": result.n_skipped,
        "n_flagged": result.n_flagged,
        "metrics": result.metrics,
        "headline": result.headline,
    }
    write_json(subject.manifest_path(stage.name), man)
    return man


# ---- running a plan -------------------------------------------------------------------------


def check_inputs(subject: SubjectDir, stage: Stage, provided: frozenset[str] = frozenset()) -> None:
    """Raise MissingInputError naming the upstream stage whose output is missing.

    Args:
        subject: the subject directory.
        stage: the stage about to run.
        provided: stages whose outputs the dataset's ingest writes itself (INSTA frames are
            already cropped and matted), so they have no manifest of their own.
    """
    for dep in stage.needs:
        if dep not in provided and read_manifest(subject, dep) is None:
            raise MissingInputError(
                dep, subject.manifest_path(dep), f"stage {stage.name} needs the output of {dep}"
            )
