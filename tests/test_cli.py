"""The command line before Hydra composes: one line for unknown keys (with the nearest valid
key), wrong types and `+` on schema keys (issue 16 item 9), and our own short --help (item 12).

Hydra alone prints five or six lines for `fx=abc` and `fit_flame.w.lmkk=1`, and, following its
own hint, accepts `+fit_flame.w.lmkk=1` silently so that the weight the user meant never changes.
"""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from prep.cli import override_args, rename_old_keys
from prep.config.schema_keys import SchemaKeys
from tests.cli_helpers import REPO, launch, one_error_line


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("fx=abc", "fx=abc: expected a number"),
        ("fit_flame.w.lmkk=1", "unknown key fit_flame.w.lmkk; did you mean fit_flame.w.lmk?"),
        ("+fit_flame.w.lmkk=1", "unknown key +fit_flame.w.lmkk"),
        ("+fit_flame.w.lmk=1", "fit_flame.w.lmk already exists: drop the leading +"),
        ("tracker.w.lmkk=1", "unknown key fit_flame.w.lmkk; did you mean fit_flame.w.lmk?"),
        ("n_shape=80", "did you mean flame.n_shape?"),
        ("fit_flam.w.lmk=1", "did you mean fit_flame.w.lmk?"),
        ("only=maybe", "only=maybe: expected true or false"),
        ("frames.jpeg_quality=high", "frames.jpeg_quality=high: expected an integer"),
        ("fit_flame.w.smooth_pose=1,ten,100", "fit_flame.w.smooth_pose=ten: expected a number"),
        ("matting.refine=soft", "matting.refine=soft: use one of guided, none"),
        ("export.formats=[imavatar,obj]", "obj is not one of imavatar, hravatar, insta, gauss"),
        (
            "matting.backend.variant=resnet50",
            "matting.backend.variant: matting=selfie takes matting",
        ),
        ("matting.variant=resnet50", "matting.backend.variant: matting=selfie takes matting.back"),
        (
            "matting=rvm,modnet matting.backend.ref_size=64",
            "matting=rvm takes matting.backend.downsample_ratio",
        ),
    ],
)
def test_bad_override_is_one_line(arg, says, tmp_path):
    line = one_error_line(launch(*arg.split(), "stage=assets", f"work_dir={tmp_path}"))
    assert says in line


def test_plus_key_is_not_silently_ignored():
    line = one_error_line(launch("+fit_flame.w.lmkk=1", "stage=assets"))
    assert "did you mean fit_flame.w.lmk?" in line


def test_valid_overrides_pass():
    keys = SchemaKeys()
    parsed = OverridesParser.create().parse_overrides(
        [
            "fx=1539.67",
            "fx=null",
            "fit_flame.w.smooth_pose=1,10,100",
            "fit_flame.w.smooth_pose=interval(1,100)",
            "export.formats=[imavatar,insta]",
            "fit_flame.phases.0.iters=3",
            "assets.root=${oc.env:HOME}/m",
            "dataset.video=/x/y.mp4",
        ]
    )
    assert [keys.check(o) for o in parsed] == [None] * len(parsed)


def test_hydra_options_are_not_overrides():
    argv = ["-m", "--cfg", "job", "-sc", "install=bash", "--info", "defaults", "fx=3", "-p", "a"]
    assert override_args(argv) == ["fx=3"]


def test_help_is_our_short_page():
    proc = launch("--help")
    assert proc.returncode == 0 and not proc.stderr
    lines = proc.stdout.splitlines()
    assert 20 <= len(lines) <= 50
    text = proc.stdout
    for needed in ("usage: python launch.py", "matting=", "stage=all", "fx=", "examples:"):
        assert needed in text
    assert "stage=fit_flame fx=1539.67" in text and "--hydra-help" in text
    hydra = launch("--hydra-help")
    assert hydra.returncode == 0 and len(hydra.stdout.splitlines()) > len(lines)


def test_readme_commands_still_parse():
    for args in (["dataset=hdtf", "stage=fit_flame", "fx=1539.67"], ["dataset=custom", "fx=3"]):
        proc = launch(*args, "--cfg", "job", cwd=REPO)
        assert proc.returncode == 0, proc.stderr


def test_console_lines_mark_warnings_only():
    """The console format of conf/hydra/job_logging/prep.yaml: a warning's message starts with
    `warning: `; info lines stay `[time] message`; errors are not marked here (a failed run's one
    `error: ...` line goes to stderr from prep.app)."""
    import logging
    import logging.config
    import re

    import yaml

    conf = yaml.safe_load((REPO / "conf/hydra/job_logging/prep.yaml").read_text())
    fmt = logging.config.DictConfigurator({}).configure_formatter(conf["formatters"]["short"])

    def line(level: int, msg: str, *args) -> str:
        return fmt.format(logging.LogRecord("prep", level, __file__, 1, msg, args, None))

    stamp = r"^\[\d\d:\d\d:\d\d\] "
    assert re.match(
        stamp + r"crop             3 frames$", line(logging.INFO, "%-16s 3 frames", "crop")
    )
    assert re.match(stamp + r"warning: waiting  export$", line(logging.WARNING, "waiting  export"))
    assert re.match(stamp + r"  failed job 3$", line(logging.ERROR, "  failed job %d", 3))


def test_old_section_names_are_read_as_the_new_ones():
    """Each stage's settings moved to the section named after it, each backend's to
    `<stage>.backend` (issue 14); the old names still work on the command line, each with an
    info line."""
    argv = [
        "-m",
        "dataset=insta",
        "tracker.w.smooth_pose=1,10,100",
        "frames.fps=25",
        "+lmdb.sizes=[256]",
        "fit3dmm.coarse.min_score=0.5",
        "fit3dmm.w.photo=2",
        "fit3dmm.coarse_backend=deep3dface",
        "fit3dmm.coarse.iters=9",
        "tracker=flame",
        "matting.variant=resnet50",
        "parsing.backend=bisenet",
        "albedo.ia_ddim=50",
        "landmarks.dlib_upsample=1",
        "--cfg",
        "job",
        "-p",
        "frames",
    ]
    out, notes = rename_old_keys(argv)
    assert out == [
        "-m",
        "dataset=insta",
        "fit_flame.w.smooth_pose=1,10,100",
        "extract_frames.fps=25",
        "+pack_lmdb.sizes=[256]",
        "fit_3dmm_coarse.min_score=0.5",
        "fit_3dmm_fine.w.photo=2",
        "fit_3dmm_coarse=deep3dface",
        "fit_3dmm_coarse.backend.iters=9",
        "matting.backend.variant=resnet50",
        "parsing=bisenet",
        "albedo.backend.ddim=50",
        "landmarks.backend.upsample=1",
        "--cfg",
        "job",
        "-p",
        "frames",
    ]
    assert notes[0] == "tracker.w.smooth_pose is now fit_flame.w.smooth_pose" and len(notes) == 12
    assert "parsing.backend=bisenet is now parsing=bisenet" in notes


def test_design_sweep_command_composes_with_the_old_name():
    """DESIGN.md's sweep, as written there (one of its jobs: Hydra prints the config)."""
    proc = launch(
        "dataset=insta",
        "subject=bala",
        "stage=fit_flame",
        "tracker.w.smooth_pose=10",
        "--cfg",
        "job",
        "--package",
        "fit_flame.w",
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "info: tracker.w.smooth_pose is now fit_flame.w.smooth_pose" in proc.stdout
    assert "smooth_pose: 10" in proc.stdout
