"""The bad-input matrix: every way a new user got it wrong (issue 16's sweep, and newer cases).

Each `Case` is one `python launch.py ...` run. Cases marked `finished` run against a copy of the
shared finished subject (tests/bad_input/conftest.py) and check that it is intact afterwards:
every file it held is still there with the same bytes, except under `may_change` (the outputs a
case legitimately re-makes). `test_matrix.py` runs them all and prints the table
case / exit code / message / outputs intact.

Adding a case: append a `Case` to `CASES` below. `args(ctx)` builds the command line from `Ctx` (a
scratch folder, the finished subject's own overrides, the test media); `run(ctx)` replaces the
plain launch when a case needs more (killing a process halfway, several runs); `check(ctx, proc)`
asserts anything else (file counts, a marker file that must not exist).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from prep.io.files import load_npz
from tests.bad_input import media
from tests.cli_helpers import launch
from tests.conftest import SHARED_DATA
from tests.stages.kill import kill_when

CLIP = SHARED_DATA / "clips" / "c03_german_anchor_512_20s.mp4"
PHOTOS = SHARED_DATA / "photos"
FIT = ("flame/", "overlays/fit_flame", ".manifests/fit_flame.json")  # what a new fit re-makes


@dataclass
class Ctx:
    """What a case builds its command from.

    Attributes:
        tmp: a scratch folder of its own.
        work: work_dir of the run (holds the copied finished subject for `finished` cases).
        base: the finished subject's overrides (dataset, video, assets, work_dir).
        marker: a file that a hostile model's payload would create.
    """

    tmp: Path
    work: Path
    base: list[str] = field(default_factory=list)
    marker: Path = Path("/nonexistent")

    @property
    def subject(self) -> Path:
        return self.work / "custom" / "fin"

    def new(self, *args: str) -> list[str]:
        """Overrides for a new subject in this case's work_dir."""
        return ["dataset=custom", f"work_dir={self.work}", "logger=none", *args]


@dataclass
class Case:
    """One bad input.

    Attributes:
        name: short id shown in the table.
        args: builds the launch.py arguments.
        exit: expected exit code.
        says: text the output must contain (the error line, or a warning in the log).
        finished: run against a copy of the finished subject and check it is intact.
        may_change: finished-subject paths (prefixes) the case may legitimately re-make.
        check: extra assertions on the finished run.
        run: replaces the plain launch (a case needing several steps).
        full_disk: every write under work_dir fails with ENOSPC.
        skip: returns a reason to skip (a GPU present, ...) or None.
        item: which issue item the case belongs to.
    """

    name: str
    args: Callable[[Ctx], list[str]]
    exit: int
    says: str
    finished: bool = False
    may_change: tuple[str, ...] = ()
    check: Callable[[Ctx, subprocess.CompletedProcess], None] | None = None
    run: Callable[[Ctx], subprocess.CompletedProcess] | None = None
    full_disk: bool = False
    skip: Callable[[], str | None] | None = None
    item: str = ""


def _no_marker(ctx: Ctx, proc) -> None:
    assert not ctx.marker.exists(), "a model file's code ran"


def _n_frames(n: int, name: str = "fin") -> Callable[[Ctx, subprocess.CompletedProcess], None]:
    def check(ctx: Ctx, proc) -> None:
        assert len(list((ctx.work / "custom" / name / "frames").iterdir())) == n

    return check


def _warned(text: str, n_frames: int) -> Callable[[Ctx, subprocess.CompletedProcess], None]:
    """The new subject has `n_frames` frames and the terminal shows `text` in a warning line."""

    def check(ctx: Ctx, proc) -> None:
        _n_frames(n_frames)(ctx, proc)
        assert any(" warning: " in ln and text in ln for ln in proc.stdout.splitlines())

    return check


def _short_help(ctx: Ctx, proc) -> None:
    lines = proc.stdout.splitlines()
    assert len(lines) <= 50 and "examples:" in proc.stdout and "matting=" in proc.stdout


def _fit_only(ctx: Ctx, proc) -> None:
    assert "fit_flame        running" in proc.stdout
    assert "extract_frames   running" not in proc.stdout


def _junk(ctx: Ctx, name: str) -> Path:
    return media.corrupt_file(ctx.tmp / name)


def _assets_folder(ctx: Ctx) -> Path:
    root = ctx.tmp / "assets"
    (root / "matting").mkdir(parents=True)
    (root / "bfm").mkdir()
    media.corrupt_file(root / "matting" / "rvm_mobilenetv3.pth")
    media.hostile_checkpoint(root / "matting" / "rvm_resnet50.pth", ctx.marker)
    media.hostile_npy(root / "bfm" / "3DMM_info.npy", ctx.marker)
    return root


def _front(ctx: Ctx) -> Path:
    from tests.fixtures.synthetic_bfm import write_synthetic_front_mat

    write_synthetic_front_mat(ctx.tmp / "BFM_model_front.mat")
    return ctx.tmp / "BFM_model_front.mat"


def _gpu() -> str | None:
    return "this machine has a CUDA GPU" if torch.cuda.is_available() else None


def _empty_folder(ctx: Ctx) -> Path:
    (ctx.tmp / "none").mkdir()
    return ctx.tmp / "none"


def _mixed_sizes(ctx: Ctx) -> Path:
    from PIL import Image

    folder = ctx.tmp / "mixed"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    Image.new("RGB", (48, 64)).save(folder / "b.png")
    return folder


def _wandb_never_answers(ctx: Ctx) -> subprocess.CompletedProcess:
    """logger.mode=online, an API key, and a W&B server that accepts but never answers."""
    import os
    import sys

    from tests.cli_helpers import REPO

    args = [
        "dataset=custom",
        f"work_dir={ctx.work}",
        f"dataset.video={CLIP}",
        "stage=detect",
        "extract_frames.max_frames=3",
        "logger=wandb",
        "logger.mode=online",
        "logger.init_timeout_s=3",
        f"logger.dir={ctx.tmp / 'wandb'}",
    ]
    with media.silent_server() as url:
        env = {
            **os.environ,
            "AVATAR_PREP_PROGRESS": "0",
            "WANDB_BASE_URL": url,
            "WANDB_API_KEY": "x" * 40,
        }
        env.pop("WANDB_MODE", None)
        return subprocess.run(
            [sys.executable, str(REPO / "launch.py"), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _offline_run_written(ctx: Ctx, proc) -> None:
    assert list((ctx.tmp / "wandb" / "wandb").glob("offline-run-*")), "no offline run"


def _strict_manifest(subject: Path, stage: str) -> dict:
    """The stage's manifest parsed as strict JSON (no NaN / Infinity tokens)."""

    def refuse(token: str):
        raise AssertionError(f"{stage} manifest holds {token}, which is not JSON")

    return json.loads((subject / ".manifests" / f"{stage}.json").read_text(), parse_constant=refuse)


def _one_photo(ctx: Ctx, proc) -> None:
    s = ctx.work / "custom" / "one"
    assert load_npz(s / "landmarks" / "landmarks.npz")["valid"].tolist() == [True]
    assert _strict_manifest(s, "landmarks")["metrics"] == {"valid_frac": 1.0}  # no track


def _noise_clip(ctx: Ctx, proc) -> None:
    s = ctx.work / "custom" / "noise"
    assert np.flatnonzero(load_npz(s / "landmarks" / "landmarks.npz")["valid"]).tolist() == [3, 12]
    metrics = _strict_manifest(s, "landmarks")["metrics"]
    assert metrics["valid_frac"] == 0.1 and metrics["fast_lag_frames"] is None  # NaN -> null


def _kill_landmarks_then_resume(ctx: Ctx) -> subprocess.CompletedProcess:
    """The finished subject's landmarks redone in a process killed (SIGKILL) once one of its
    three chunks is written, then resumed; the finished landmarks are kept as the reference."""
    s = ctx.subject
    ref = ctx.tmp / "uninterrupted"
    ref.mkdir()
    shutil.copy(s / "landmarks" / "landmarks.npz", ref)
    shutil.copy(s / "landmarks" / "keypoint.json", ref)
    shutil.rmtree(s / "landmarks")
    (s / ".manifests" / "landmarks.json").unlink()
    args = [*ctx.base, "stage=landmarks"]
    chunks = s / "landmarks" / "chunks"
    kill_when([sys.executable, "launch.py", *args], lambda: len(_chunks(chunks)) >= 1, 120)
    assert 1 <= len(_chunks(chunks)) < 3 and not (s / "landmarks" / "landmarks.npz").exists()
    return launch(*args)


def _chunks(folder: Path) -> list[Path]:
    return list(folder.glob("0*.npz")) if folder.is_dir() else []


def _same_as_uninterrupted(ctx: Ctx, proc) -> None:
    from tests.stages.test_exact_resume import assert_same_npz

    s, ref = ctx.subject / "landmarks", ctx.tmp / "uninterrupted"
    skipped = int(re.search(r"landmarks +41 frames, (\d+) skipped", proc.stdout).group(1))
    assert skipped in (16, 32)  # resumed after the chunks the killed run finished
    assert_same_npz(s / "landmarks.npz", ref / "landmarks.npz")
    assert (s / "keypoint.json").read_bytes() == (ref / "keypoint.json").read_bytes()


def _padded_outside_the_frame(ctx: Ctx, proc) -> None:
    """c03 is a tight 512 head shot: the default 2.3x box leaves it on every side."""
    from prep.geometry.crop import inframe_reader
    from prep.io.files import read_image
    from prep.subject import SubjectDir

    s = SubjectDir(ctx.work / "custom" / "pad")
    inside_of = inframe_reader(s)
    for i in range(s.n_frames):
        inside = inside_of(i)
        assert 0.6 < inside.mean() < 0.95 and not inside[0].any() and not inside[:, -1].any()
        assert (read_image(s.alpha_path(i), "gray")[~inside] == 0).all()  # never foreground
        # the JPEG crop: pad value 0 away from the frame's edge (ringing in the blocks along
        # it); replicated edge pixels made streaks all the way out
        ys, xs = np.nonzero(inside)
        far = np.ones_like(inside)
        far[max(ys.min() - 16, 0) : ys.max() + 17, max(xs.min() - 16, 0) : xs.max() + 17] = False
        assert far.any() and read_image(s.crop_frame_path(i), "rgb")[far].max() <= 2


def _said_once(text: str) -> Callable[[Ctx, subprocess.CompletedProcess], None]:
    def check(ctx: Ctx, proc) -> None:
        assert sum(text in ln for ln in (proc.stdout + proc.stderr).splitlines()) == 1
        det = load_npz(ctx.work / "custom" / "photos" / "detect" / "detections.npz")
        assert not det["sequence"]

    return check


DEMO = ["dataset=demo", "extract_frames.max_frames=6", "logger=none"]

CASES: list[Case] = [
    # -- finished work is never destroyed (items 3, 4) --------------------------------------
    Case(
        "video: empty file",
        lambda c: [
            *c.base,
            f"dataset.video={media.empty_file(c.tmp / 'e.mp4')}",
            "stage=extract_frames",
        ],
        2,
        "is empty (0 bytes)",
        finished=True,
        item="3",
    ),
    Case(
        "video: random bytes",
        lambda c: [*c.base, f"dataset.video={_junk(c, 'c.mp4')}", "stage=extract_frames"],
        2,
        "cannot read",
        finished=True,
        item="3",
    ),
    Case(
        "video: truncated, finished subject",
        lambda c: [*c.base, f"dataset.video={media.truncated_copy(CLIP, c.tmp / 't.mp4')}"],
        2,
        "decoded 144 of the 500 frames",
        finished=True,
        item="3",
    ),
    Case(
        "video: path does not exist",
        lambda c: [*c.base, f"dataset.video={c.tmp / 'gone.mp4'}"],
        2,
        "input not found",
        finished=True,
        item="3",
    ),
    Case(
        "matting=rvm, checkpoint random bytes",
        lambda c: [
            *c.base,
            "matting=rvm",
            f"assets.rvm_mobilenetv3={_junk(c, 'r.pth')}",
            "stage=matting",
        ],
        2,
        "rvm_mobilenetv3: unreadable checkpoint",
        finished=True,
        item="4",
    ),
    Case(
        "parsing=bisenet, checkpoint random bytes",
        lambda c: [
            *c.base,
            "parsing=bisenet",
            f"assets.bisenet={_junk(c, 'b.pth')}",
            "stage=parsing",
        ],
        2,
        "bisenet: unreadable checkpoint",
        finished=True,
        item="4",
    ),
    Case(
        "matting=rvm stage=all, hostile checkpoint",
        lambda c: [
            *c.base,
            "matting=rvm",
            f"assets.rvm_mobilenetv3={media.hostile_checkpoint(c.tmp / 'h.pth', c.marker)}",
        ],
        2,
        "refused (the checkpoint names posix.system",
        finished=True,
        may_change=("report/", ".manifests/report.json"),
        check=_no_marker,
        item="1, 4, 11",
    ),
    Case(
        "bfm.variant=adnerf, hostile 3DMM_info.npy",
        lambda c: [
            *c.base,
            "stage=fit_3dmm_fine",
            "bfm.variant=adnerf",
            f"assets.bfm_front={_front(c)}",
            f"assets.bfm_adnerf={media.hostile_npy(c.tmp / '3DMM_info.npy', c.marker)}",
        ],
        2,
        "refused (the pickle names posix.system",
        finished=True,
        check=_no_marker,
        item="1",
    ),
    # -- stage keys (item 5) ----------------------------------------------------------------
    Case(
        "fx= on a finished subject",
        lambda c: [*c.base, "stage=fit_flame", "fx=1539.67"],
        0,
        "fit_flame        running (config changed)",
        finished=True,
        may_change=FIT,
        check=_fit_only,
        item="5",
    ),
    Case(
        "FLAME file changed under a finished fit",
        lambda c: [
            *c.base,
            "stage=fit_flame",
            f"assets.flame2020={media.other_flame_model(c.tmp)}",
        ],
        0,
        "fit_flame        running (inputs changed)",
        finished=True,
        may_change=FIT,
        check=_fit_only,
        item="5",
    ),
    # -- config values up front (item 8, issue 12) --------------------------------------------
    Case(
        "fit_flame.w.lmk=-1",
        lambda c: [*c.base, "stage=fit_flame", "fit_flame.w.lmk=-1"],
        2,
        "fit_flame.w.lmk=-1.0 must be > 0",
        finished=True,
        item="8",
    ),
    Case(
        "fit_flame.w.smooth_pose=-4",
        lambda c: [*c.base, "stage=fit_flame", "fit_flame.w.smooth_pose=-4"],
        2,
        "must be >= 0",
        finished=True,
        item="8",
    ),
    Case(
        "flame.n_shape above the model's",
        lambda c: [*c.base, "stage=fit_flame", "flame.n_shape=400"],
        2,
        "flame.n_shape=400 but generic_model.pkl has 300 identity components",
        finished=True,
        item="8",
    ),
    Case(
        "device=cuda without a GPU",
        lambda c: [*c.base, "stage=fit_flame", "device=cuda"],
        2,
        "device=cuda but torch finds no CUDA GPU",
        finished=True,
        skip=_gpu,
        item="8",
    ),
    Case(
        "extract_frames.fps=-5",
        lambda c: [*c.base, "extract_frames.fps=-5"],
        2,
        "extract_frames.fps=-5.0 must be positive",
        finished=True,
        item="8",
    ),
    # -- one line for every mistake (item 9) ------------------------------------------------
    Case("fx=abc", lambda c: ["fx=abc"], 2, "fx=abc: expected a number", item="9"),
    Case(
        "fit_flame.w.lmkk=1",
        lambda c: ["fit_flame.w.lmkk=1"],
        2,
        "did you mean fit_flame.w.lmk?",
        item="9",
    ),
    Case(
        "+fit_flame.w.lmkk=1",
        lambda c: ["+fit_flame.w.lmkk=1"],
        2,
        "unknown key +fit_flame.w.lmkk",
        item="9",
    ),
    Case("matting=nope", lambda c: ["matting=nope"], 2, "unknown matting 'nope'", item="9"),
    Case(
        "dataset=custom without an input",
        lambda c: c.new("stage=extract_frames"),
        2,
        "needs dataset.video=<file> or dataset.images=<folder>",
    ),
    Case(
        "subject=../x",
        lambda c: c.new("subject=../x", f"dataset.video={CLIP}"),
        2,
        "path separators",
    ),
    Case(
        "image folder without images",
        lambda c: c.new(f"dataset.images={_empty_folder(c)}"),
        2,
        "no images",
    ),
    Case(
        "images of mixed sizes",
        lambda c: c.new(f"dataset.images={_mixed_sizes(c)}"),
        2,
        "mixed image sizes",
    ),
    # -- requested work that could not run (item 11) ----------------------------------------
    Case(
        "demo, nothing licence-gated asked for",
        lambda c: [*DEMO, f"work_dir={c.work}", f"assets.root={c.tmp}"],
        0,
        "warning: waiting  fit_flame: flame2020: not found",
        item="11",
    ),
    Case(
        "demo with matting=rvm, weights missing",
        lambda c: [*DEMO, f"work_dir={c.work}", f"assets.root={c.tmp}", "matting=rvm"],
        2,
        "stage matting could not run",
        item="11",
    ),
    # -- what the user is told (items 2, 12) ------------------------------------------------
    Case(
        "stage=assets, garbage and hostile files",
        lambda c: ["stage=assets", f"assets.root={_assets_folder(c)}"],
        0,
        "refused (the pickle names posix.system",
        check=_no_marker,
        item="2",
    ),
    Case(
        "video: truncated, new subject",
        lambda c: c.new(
            f"dataset.video={media.truncated_copy(CLIP, c.tmp / 'cut.mp4')}",
            "subject=fin",
            "stage=extract_frames",
        ),
        0,
        "decoded 144 of the 500 frames its header announces",
        check=_warned("decoded 144 of the 500", 144),
        item="12",
    ),
    Case(
        "two faces",
        lambda c: c.new(
            f"dataset.images={media.two_faces_folder(PHOTOS, c.tmp / 'two')}", "stage=detect"
        ),
        0,
        "warning: detect: 3 of 3 frames show 2 faces; following one subject, the larger face",
        item="12",
    ),
    Case(
        "face of ~60 px",
        lambda c: c.new(
            f"dataset.images={media.small_face_folder(PHOTOS, c.tmp / 'small')}", "stage=detect"
        ),
        0,
        "warning: detect: the face is only about 58 px wide",
        item="12",
    ),
    Case(
        "disk full",
        lambda c: c.new(
            f"dataset.video={CLIP}", "extract_frames.max_frames=5", "stage=extract_frames"
        ),
        2,
        "no space left on the device writing",
        full_disk=True,
        item="12",
    ),
    Case(
        "--help", lambda c: ["--help"], 0, "usage: python launch.py", check=_short_help, item="12"
    ),
    Case(
        "W&B online, server never answers",
        lambda c: [],
        0,
        "did not answer within 3 s",
        run=_wandb_never_answers,
        check=_offline_run_written,
        item="10",
    ),
    # -- perception: sparse inputs, resume, pixels outside the frame, photo collections -------
    Case(
        "folder with one photo",
        lambda c: c.new(
            f"dataset.images={media.one_photo_folder(PHOTOS, c.tmp / 'one')}", "stage=landmarks"
        ),
        0,
        "detect: a single image: processed as a photo",
        check=_one_photo,
        item="7",
    ),
    Case(
        "noise clip, 20 frames, a face in 2",
        lambda c: c.new(
            f"dataset.video={media.noise_clip(CLIP, c.tmp / 'noise.mp4')}", "stage=landmarks"
        ),
        0,
        "landmarks: 2/20 frames with a face",
        check=_noise_clip,
        item="7",
    ),
    Case(
        "landmarks killed (SIGKILL) and resumed",
        lambda c: [],
        0,
        "landmarks        41 frames,",
        finished=True,
        may_change=("landmarks/", ".manifests/landmarks.json"),
        run=_kill_landmarks_then_resume,
        check=_same_as_uninterrupted,
        item="6",
    ),
    Case(
        "c03, default crop leaves the frame",
        lambda c: c.new(
            f"dataset.video={CLIP}", "subject=pad", "extract_frames.max_frames=3", "stage=matting"
        ),
        0,
        "crop: the box leaves the frame by up to",
        check=_padded_outside_the_frame,
        item="14",
    ),
    Case(
        "folder of unrelated photos",
        lambda c: c.new(
            f"dataset.images={media.unrelated_photos_folder(PHOTOS, CLIP, c.tmp / 'photos')}",
            "stage=detect",
        ),
        0,
        "processed as a photo collection",
        check=_said_once("photo collection"),
        item="13",
    ),
]

# (case, exit code, message, outputs intact) rows of the cases run in this session; printed at
# the end of the test run by tests/bad_input/conftest.py.
ROWS: list[tuple[str, int, str, bool | None]] = []
