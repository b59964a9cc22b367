"""Stage engine: dependency order, skip-if-done, re-run on change, force, resume helpers."""

from __future__ import annotations

import numpy as np
import pytest

from prep.errors import BadConfigError, MissingAssetError, MissingInputError
from prep.io.files import read_json, write_image
from prep.pipeline import StageResult, register_stage
from prep.resume import ChunkStore, frame_chunks
from prep.runner import plan_stages, run_plan
from prep.subject import SubjectDir

CALLS: list[str] = []


@register_stage("toy_src", config=("extract_frames",), writes=lambda s: [s.frames_dir], version=1)
def _toy_src(ctx):
    CALLS.append("toy_src")
    n = 5
    for i in range(n):
        p = ctx.subject.frame_path(i)
        if not p.exists():
            write_image(p, np.full((8, 8, 3), i, np.uint8))
    return StageResult(n_frames=n, metrics={"value": 1.0}, headline="value")


@register_stage("toy_sink", needs=("toy_src",), config=("detect",))
def _toy_sink(ctx):
    CALLS.append("toy_sink")
    return StageResult(
        n_frames=len(ctx.subject.frame_names()), metrics={"err": 0.5}, headline="err"
    )


@register_stage("toy_gated", needs=("toy_src",), assets=lambda cfg: ["flame2020"])
def _toy_gated(ctx):
    CALLS.append("toy_gated")
    return StageResult()


@register_stage("toy_user", needs=("toy_src",), uses=("toy_sink",), writes=lambda s: [s.albedo_dir])
def _toy_user(ctx):
    """Writes one file per frame, resuming by existence, like the per-frame stages."""
    CALLS.append("toy_user")
    ctx.fresh_outputs([ctx.subject.albedo_dir])
    tag = "with_sink" if ctx.subject.manifest_path("toy_sink").exists() else "alone"
    for i in range(3):
        p = ctx.subject.albedo_path(i)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(tag)
    return StageResult(n_frames=3)


PLAN = "dataset.plan=[toy_src,toy_sink,toy_gated]"


@pytest.fixture
def make(compose_cfg, tmp_path):
    CALLS.clear()

    def build(*overrides):
        cfg = compose_cfg(
            "dataset=custom", "subject=s1", PLAN, f"assets.root={tmp_path / 'assets'}", *overrides
        )
        return cfg, SubjectDir(tmp_path / "work" / "custom" / "s1")

    return build


def test_target_runs_missing_upstream_then_skips(make):
    cfg, subject = make("stage.name=toy_sink")
    out = run_plan(cfg, subject)
    assert out.ran == ["toy_src", "toy_sink"]
    assert out.headline() == 0.5
    CALLS.clear()
    out = run_plan(cfg, subject)
    assert out.ran == [] and out.skipped == ["toy_src", "toy_sink"] and CALLS == []
    assert out.headline() == 0.5  # a sweep re-visiting a finished job still gets its metric
    man = read_json(subject.manifest_path("toy_src"))
    assert man["written"] == {"frames": 5} and man["n_frames"] == 5


def test_deleted_output_reruns_stage_and_downstream(make):
    cfg, subject = make("stage.name=toy_sink")
    run_plan(cfg, subject)
    subject.frame_path(2).unlink()
    CALLS.clear()
    out = run_plan(cfg, subject)
    assert out.ran == ["toy_src", "toy_sink"]
    assert subject.frame_path(2).exists()


def test_config_change_reruns_only_affected_stage(make):
    cfg, subject = make("stage.name=toy_sink")
    run_plan(cfg, subject)
    cfg2, _ = make("stage.name=toy_sink", "detect=dlib")
    assert run_plan(cfg2, subject).ran == ["toy_sink"]


def test_force_reruns_target_only(make):
    cfg, subject = make("stage.name=toy_sink")
    run_plan(cfg, subject)
    cfg2, _ = make("stage.name=toy_sink", "force=true")
    assert run_plan(cfg2, subject).ran == ["toy_sink"]


def test_only_names_missing_upstream_stage(make):
    cfg, subject = make("stage.name=toy_sink", "only=true")
    with pytest.raises(MissingInputError, match="stage=toy_src"):
        run_plan(cfg, subject)


def test_unknown_stage_is_config_error(make):
    cfg, _ = make("stage.name=toy_sink")
    cfg.stage.name = "nope"
    with pytest.raises(BadConfigError, match="unknown stage 'nope'"):
        plan_stages(cfg)


def test_missing_asset_fails_before_any_work(make):
    cfg, subject = make("stage.name=toy_gated")
    with pytest.raises(MissingAssetError) as e:
        run_plan(cfg, subject)
    assert CALLS == []
    msg = str(e.value)
    assert "generic_model.pkl" in msg and "assets.flame2020" in msg and "flame.is.tue" in msg


def test_stage_all_defers_gated_stages(make):
    cfg, subject = make("stage=all")
    out = run_plan(cfg, subject)
    assert out.ran == ["toy_src", "toy_sink"]
    assert "toy_gated" in out.waiting and "flame2020" in out.waiting["toy_gated"]


def _run_dying(make, subject, dies):
    """Re-run toy_src (force) with `dies(ctx)` as its body; it must raise KeyboardInterrupt."""
    from prep import pipeline

    cfg, _ = make("stage.name=toy_src", "force=true")
    original = pipeline._REGISTRY["toy_src"]
    pipeline._REGISTRY["toy_src"] = original.__class__(**{**original.__dict__, "run": dies})
    try:
        with pytest.raises(KeyboardInterrupt):
            run_plan(cfg, subject)
    finally:
        pipeline._REGISTRY["toy_src"] = original


def test_killed_stage_is_not_taken_as_done(make):
    cfg, subject = make("stage.name=toy_src")
    run_plan(cfg, subject)
    # A re-run that dies after touching its outputs leaves no manifest: the next run repeats it.

    def dies_midway(ctx):
        ctx.subject.frame_path(0).unlink()
        raise KeyboardInterrupt

    _run_dying(make, subject, dies_midway)
    assert not subject.manifest_path("toy_src").exists()
    assert run_plan(cfg, subject).ran == ["toy_src"]


def test_failure_before_any_write_keeps_the_stage_done(make):
    cfg, subject = make("stage.name=toy_src")
    run_plan(cfg, subject)
    manifest = read_json(subject.manifest_path("toy_src"))

    def dies_at_once(ctx):
        raise KeyboardInterrupt

    _run_dying(make, subject, dies_at_once)
    assert read_json(subject.manifest_path("toy_src")) == manifest
    CALLS.clear()
    assert run_plan(cfg, subject).ran == [] and CALLS == []


def test_chunk_store_resume_and_merge(tmp_path):
    store = ChunkStore(tmp_path / "chunks")
    todo = list(frame_chunks(10, chunk=4, done=store.has))
    assert todo == [(0, 4), (4, 8), (8, 10)]
    for i0, i1 in todo[:2]:
        store.write(i0, i1, x=np.arange(i0, i1))
    assert list(frame_chunks(10, chunk=4, done=store.has)) == [(8, 10)]
    with pytest.raises(ValueError, match="covers 8 of 10"):
        store.merge(10)
    store.write(8, 10, x=np.arange(8, 10))
    np.testing.assert_array_equal(store.merge(10)["x"], np.arange(10))


def test_stages_provided_by_the_ingest_are_not_run(make):
    cfg, subject = make("stage.name=toy_sink", "dataset.provided=[toy_src]")
    assert plan_stages(cfg) == ["toy_sink"]
    assert run_plan(cfg, subject).ran == ["toy_sink"]
    assert CALLS == ["toy_sink"]


def test_used_stage_is_not_run_but_its_rerun_refreshes_outputs(make):
    cfg, subject = make("stage.name=toy_user")
    assert run_plan(cfg, subject).ran == ["toy_src", "toy_user"]
    assert subject.albedo_path(0).read_text() == "alone"
    cfg_sink, _ = make("stage.name=toy_sink")
    run_plan(cfg_sink, subject)
    # The optional input appeared: the stage re-runs and does not keep its stale frames.
    assert run_plan(cfg, subject).ran == ["toy_user"]
    assert subject.albedo_path(0).read_text() == "with_sink"
    assert run_plan(cfg, subject).ran == []


# ---- finished work survives a failing re-run; keys; requested work (issue 16 items 4, 5, 11) ----

FAIL_AT: dict[str, int | None] = {"toy_frames": None}


@register_stage("toy_frames", needs=("toy_src",), config=("crop",), writes=lambda s: [s.alpha_dir])
def _toy_frames(ctx):
    """A per-frame stage that clears outputs of other settings, then may fail at frame k."""
    CALLS.append("toy_frames")
    ctx.fresh_outputs([ctx.subject.alpha_dir])
    for i in range(4):
        if FAIL_AT["toy_frames"] == i:
            raise RuntimeError(f"frame {i} failed")
        p = ctx.subject.alpha_path(i)
        if not p.exists():
            write_image(p, np.full((4, 4), ctx.cfg.crop.image_size % 256, np.uint8))
    return StageResult(n_frames=4)


@register_stage("toy_fit", needs=("toy_src",), config=("intrinsics",))
def _toy_fit(ctx):
    CALLS.append("toy_fit")
    return StageResult(n_frames=1)


@register_stage("toy_check", needs=("toy_src",), check=lambda cfg, s: _refuse(cfg))
def _toy_check(ctx):
    CALLS.append("toy_check")
    return StageResult()


def _refuse(cfg):
    if cfg.crop.image_size == 99:
        raise MissingInputError("toy_src", "/nowhere", "the source does not decode")


def _alpha_bytes(subject: SubjectDir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(subject.alpha_dir.iterdir())}


def test_failed_rerun_gives_the_old_outputs_back(make):
    cfg, subject = make("stage.name=toy_frames")
    run_plan(cfg, subject)
    before, manifest = _alpha_bytes(subject), read_json(subject.manifest_path("toy_frames"))
    cfg2, _ = make("stage.name=toy_frames", "crop.image_size=300")  # new key: clears, re-makes
    FAIL_AT["toy_frames"] = 2
    try:
        with pytest.raises(RuntimeError, match="frame 2 failed"):
            run_plan(cfg2, subject)
    finally:
        FAIL_AT["toy_frames"] = None
    assert _alpha_bytes(subject) == before  # new partial frames gone, old ones back
    assert read_json(subject.manifest_path("toy_frames")) == manifest
    assert not (subject.root / ".stash").exists()
    CALLS.clear()
    assert run_plan(cfg, subject).ran == [] and CALLS == []  # still done under the old config
    assert run_plan(cfg2, subject).ran == ["toy_frames"]  # and the new one runs cleanly
    assert _alpha_bytes(subject) != before


def test_interrupted_rerun_keeps_its_new_frames_for_resuming(make):
    cfg, subject = make("stage.name=toy_frames")
    run_plan(cfg, subject)
    cfg2, _ = make("stage.name=toy_frames", "crop.image_size=300")
    original = pipeline_registry()["toy_frames"]

    def interrupted(ctx):
        ctx.fresh_outputs([ctx.subject.alpha_dir])
        write_image(ctx.subject.alpha_path(0), np.zeros((4, 4), np.uint8))
        raise KeyboardInterrupt

    pipeline_registry()["toy_frames"] = original.__class__(
        **{**original.__dict__, "run": interrupted}
    )
    try:
        with pytest.raises(KeyboardInterrupt):
            run_plan(cfg2, subject)
    finally:
        pipeline_registry()["toy_frames"] = original
    assert [p.name for p in subject.alpha_dir.iterdir()] == ["000000.png"]
    assert not (subject.root / ".stash").exists()


def pipeline_registry():
    from prep import pipeline

    return pipeline._REGISTRY


def test_input_check_runs_before_any_stage(make):
    cfg, subject = make("stage.name=toy_check", "crop.image_size=99")
    with pytest.raises(MissingInputError, match="does not decode"):
        run_plan(cfg, subject)
    assert CALLS == [] and not subject.frames_dir.exists()


def test_intrinsics_change_only_stages_that_declare_them(make):
    cfg, subject = make("stage=all", "dataset.plan=[toy_src,toy_sink,toy_fit]")
    run_plan(cfg, subject)
    cfg2, _ = make("stage=all", "dataset.plan=[toy_src,toy_sink,toy_fit]", "fx=1500")
    assert run_plan(cfg2, subject).ran == ["toy_fit"]
    # the dataset's default camera counts the same as the top-level key
    cfg3, _ = make("stage=all", "dataset.plan=[toy_src,toy_sink,toy_fit]", "dataset.fx=1500")
    assert run_plan(cfg3, subject).ran == []
    cfg4, _ = make("stage=all", "dataset.plan=[toy_src,toy_sink,toy_fit]", "dataset.fx=1400")
    assert run_plan(cfg4, subject).ran == ["toy_fit"]


@register_stage(
    "toy_backend",
    needs=("toy_src",),
    config=("matting",),
    assets=lambda cfg: ["rvm_mobilenetv3"] if cfg.matting.backend.name == "rvm" else ["flame2020"],
)
def _toy_backend(ctx):
    CALLS.append("toy_backend")
    return StageResult()


def test_waiting_is_an_unmet_request_only_when_asked_for(make):
    plan = "dataset.plan=[toy_src,toy_backend]"
    cfg, subject = make("stage=all", plan)
    out = run_plan(cfg, subject)
    assert "toy_backend" in out.waiting and out.unmet == {}  # the defaults need flame2020 too
    cfg, _ = make("stage=all", plan, "matting=rvm")
    out = run_plan(cfg, subject)
    assert "rvm_mobilenetv3" in out.unmet["toy_backend"]
