"""Run a plan of stages on one subject: order, skip-if-done, asset checks, timing, summaries."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

from prep.asset_checks import missing_assets
from prep.config import Config
from prep.errors import BadConfigError, MissingAssetError
from prep.io.files import write_json
from prep.logger import make_logger
from prep.pipeline import (
    Stage,
    StageContext,
    StageResult,
    check_inputs,
    get_stage,
    is_done,
    read_manifest,
    upstream_closure,
    write_manifest,
    writes_state,
)
from prep.resume import replace_when_done
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


@dataclass
class PlanOutcome:
    """What happened to each stage of a plan."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # stage -> missing asset message
    unmet: dict[str, str] = field(default_factory=dict)  # waiting stages the user asked for
    results: dict[str, StageResult] = field(default_factory=dict)  # ran and skipped stages

    def headline(self) -> float | None:
        """Headline metric of the last stage that reported one (what a sweep minimises)."""
        for result in reversed(list(self.results.values())):
            if result.headline and result.headline in result.metrics:
                return float(result.metrics[result.headline])
        return None


def plan_stages(cfg: Config) -> list[str]:
    """Stages to consider, in order: the dataset plan for stage=all, else the target's upstream."""
    target = cfg.stage.name
    if target == "all":
        plan = list(cfg.dataset.plan)
        for name in plan:
            get_stage(name)
        return plan
    get_stage(target)
    if cfg.only:
        return [target]
    # Upstream stages the dataset's ingest stands in for (INSTA: crop, matting) are not run.
    skip = provided_by_ingest(cfg)
    return [s for s in upstream_closure(target) if s == target or s not in skip]


def provided_by_ingest(cfg: Config) -> frozenset[str]:
    """Stages whose work the dataset's ingest already did (INSTA frames come cropped, matted)."""
    return frozenset(cfg.dataset.provided)


def stages_to_run(cfg: Config, subject: SubjectDir, stages: list[Stage]) -> set[str]:
    """Names of the stages of the plan that will run: not done, forced, or fed by one that runs."""
    run: set[str] = set()
    for st in stages:
        forced = cfg.force and cfg.stage.name in ("all", st.name)
        fed = any(dep in run for dep in st.needs + st.uses)
        if forced or fed or not is_done(cfg, subject, st)[0]:
            run.add(st.name)
    return run


def run_plan(cfg: Config, subject: SubjectDir) -> PlanOutcome:
    """Run `cfg.stage` (with its missing upstream stages) on `subject`.

    Before any stage starts (so before anything is removed), every model file of the stages
    that will run is opened and checked (`prep.asset_checks`), the config is checked against
    those models, and each stage's own input check runs (the source video decodes, ...). With
    an explicit stage a missing or bad asset is an error; with stage=all the stages that need it
    (and their dependents) wait and the rest run.
    """
    names = plan_stages(cfg)
    stages = [get_stage(n) for n in names]
    outcome = PlanOutcome()
    will_run = stages_to_run(cfg, subject, stages)
    blocked: set[str] = set()
    for st in stages:
        errors = missing_assets(cfg, st, deep=st.name in will_run)
        if errors and cfg.stage.name != "all":
            raise errors[0]
        waits_for = [dep for dep in st.needs if dep in blocked]
        if errors or waits_for:
            blocked.add(st.name)
            outcome.waiting[st.name] = str(errors[0]) if errors else f"waits for {waits_for[0]}"
            if errors:
                outcome.unmet.update(unmet_request(cfg, st, errors[0]))
    preflight(cfg, subject, [st for st in stages if st.name in will_run - blocked])
    for st in stages:
        if st.name in blocked:
            continue
        forced = cfg.force and (cfg.stage.name in ("all", st.name))
        done, why = is_done(cfg, subject, st)
        if done and not forced:
            log.info("%-16s done, skipped (force=true re-runs it)", st.name)
            outcome.skipped.append(st.name)
            outcome.results[st.name] = result_from_manifest(subject, st.name)
            continue
        log.info("%-16s running (%s)", st.name, "forced" if forced else why)
        outcome.results[st.name] = run_stage(cfg, subject, st, forced)
        outcome.ran.append(st.name)
    return outcome


def preflight(cfg: Config, subject: SubjectDir, stages: list[Stage]) -> None:
    """Checks made before any stage of the plan starts: config against the models, inputs."""
    from prep.config.validate import check_against_models

    check_against_models(cfg, [st.name for st in stages])
    for st in stages:
        if st.check is not None:
            st.check(cfg, subject)


def unmet_request(cfg: Config, st: Stage, error: MissingAssetError) -> dict[str, str]:
    """{stage: why} when `st` waits for an asset the user asked for, or one that is broken.

    An asset is asked for when the default choices of every backend and model would not need it
    (``matting=rvm``, ``flame=flame2023``, ``fit_flame.init=deca``). A missing asset that the
    defaults need too (FLAME for the demo's fit_flame) only makes the stage wait.
    """
    if error.status in ("corrupt", "refused"):
        return {st.name: str(error)}
    default_needs = st.assets(default_choices(cfg)) if st.assets else []
    if error.asset in default_needs:
        return {}
    return {st.name: f"the config asks for {error}"}


def default_choices(cfg: Config) -> Config:
    """`cfg` with every stage section (backends, models, tracker) back at its defaults."""
    from prep.config.backends import default_backends

    keep = {"dataset", "stage", "assets", "logger", "extract_frames"}
    sections = {
        f.name: type(getattr(cfg, f.name))()
        for f in dataclasses.fields(cfg)
        if dataclasses.is_dataclass(getattr(cfg, f.name)) and f.name not in keep
    }
    for group, settings in default_backends().items():
        sections[group] = dataclasses.replace(sections[group], backend=settings)
    return dataclasses.replace(cfg, **sections)


def result_from_manifest(subject: SubjectDir, name: str) -> StageResult:
    """The recorded result of a finished stage (so a sweep re-visiting it gets its headline)."""
    man = read_manifest(subject, name) or {}
    return StageResult(
        n_frames=man.get("n_frames", 0),
        n_skipped=man.get("n_skipped", 0),
        n_flagged=man.get("n_flagged", 0),
        metrics=man.get("metrics", {}),
        headline=man.get("headline"),
    )


def run_stage(cfg: Config, subject: SubjectDir, st: Stage, force: bool) -> StageResult:
    """Run one stage whose inputs exist, then record its manifest and print its summary."""
    check_inputs(subject, st, provided_by_ingest(cfg))
    previous, before = read_manifest(subject, st.name), writes_state(subject, st)
    subject.manifest_path(st.name).unlink(missing_ok=True)
    started = time.time()
    logger = make_logger(cfg, subject, st.name)
    try:
        # Outputs the stage clears wait in a stash: a failure puts them back (and so the manifest).
        with replace_when_done(subject.root / ".stash" / st.name):
            result = st.run(StageContext(cfg, subject, st.name, force, logger))
            if not isinstance(result, StageResult):
                raise BadConfigError(f"stage {st.name} returned {type(result).__name__}")
            man = write_manifest(cfg, subject, st, result, started)
        logger.summary({**result.metrics, "duration_s": man["duration_s"]})
    except BaseException:
        if previous is not None and before is not None and writes_state(subject, st) == before:
            write_json(subject.manifest_path(st.name), previous)  # outputs untouched: still done
        raise
    finally:
        logger.finish()
    log.info(
        "%-16s %d frames, %d skipped, %d flagged, %.1f s -> %s",
        st.name,
        result.n_frames,
        result.n_skipped,
        result.n_flagged,
        man["duration_s"],
        subject.root,
    )
    return result


def asset_waiting_lines(outcome: PlanOutcome) -> list[str]:
    """One line per waiting stage, for the end-of-run summary."""
    return [f"{name}: {why}" for name, why in outcome.waiting.items()]
