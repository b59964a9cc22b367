"""Command-line checks made before Hydra composes the config, for one-line errors, and the
terminal's log line format."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from prep.vision.mp_graph import NATIVE_QUIET_ENV


class ConsoleFormatter(logging.Formatter):
    """Terminal log lines (conf/hydra/job_logging/prep.yaml): a warning's message starts with
    ``warning: `` so it stands out among the progress lines; other levels are left as they are
    (a failed run ends with its one ``error: ...`` line on stderr, printed by `prep.app`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if logging.WARNING <= record.levelno < logging.ERROR:
            record = logging.makeLogRecord(
                {**record.__dict__, "message": f"warning: {record.message}"}
            )
        return super().formatMessage(record)


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
    """Before Hydra composes: our --help page, and one-line errors for unknown group options,
    unknown keys and wrong value types."""
    for key, value in NATIVE_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    argv = sys.argv[1:]
    if "--help" in argv or "-h" in argv:
        print_help(conf_dir)
        sys.exit(0)
    argv, notes = rename_old_keys(argv)
    for note in notes:
        print(f"info: {note}")
    sys.argv[1:] = argv
    error = check_group_choices(argv, conf_dir) or check_overrides(argv, conf_dir)
    if error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


# Hydra options that take the next word as their argument (so it is not read as an override).
_OPTS_WITH_ARG = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}


def _override_indices(argv: list[str]) -> list[int]:
    """Where in `argv` the overrides are (not Hydra options or their arguments)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in _OPTS_WITH_ARG:
            skip = True
        elif arg in ("--info", "-i"):
            skip = i + 1 < len(argv) and "=" not in argv[i + 1]
        elif not arg.startswith("-"):
            out.append(i)
    return out


def override_args(argv: list[str]) -> list[str]:
    """The words of `argv` that are overrides (not Hydra options or their arguments)."""
    return [argv[i] for i in _override_indices(argv)]


# Keys as they were named before each stage's settings moved to the section named after the stage
# and each backend's settings to `<stage>.backend` (issue 14): still read on the command line,
# rewritten before Hydra composes, with an info line. The first matching prefix wins.
# "<old field>[:<new field>]" per stage, the fields now in the backend's settings
_MOVED_TO_BACKEND = {
    "detect": "model dlib_upsample:upsample",
    "matting": "selfie_model:model variant downsample_ratio ref_size",
    "landmarks": "static_image_mode min_detection_confidence min_tracking_confidence warmup "
    "dlib_upsample:upsample",
    "parsing": "neck_length neck_half_width bisenet_size:size",
    "albedo": "region outside use_mesh retinex_sigmas sh_ridge min_shading batch_size "
    "ia_python:python ia_script:script ia_model_dir:model_dir ia_ddim:ddim "
    "ia_batch_size:batch_size ia_image_interval:image_interval ia_timeout_s:timeout_s",
    "fit3dmm.coarse": "iters_rigid iters lr w_id w_exp batch",
}
_STAGE = {"fit3dmm.coarse": "fit_3dmm_coarse"}
OLD_KEYS: tuple[tuple[str, str], ...] = (
    *(
        (f"{stage}.{old}", f"{_STAGE.get(stage, stage)}.backend.{new or old}")
        for stage, fields in _MOVED_TO_BACKEND.items()
        for old, _, new in (f.partition(":") for f in fields.split())
    ),
    ("frames", "extract_frames"),
    ("tracker", "fit_flame"),
    ("lmdb", "pack_lmdb"),
    ("fit3dmm.coarse", "fit_3dmm_coarse"),
    ("fit3dmm", "fit_3dmm_fine"),
    ("report.jitter_flag_px", "report.lmk_midpoint_dev_flag_px"),
)
# Old keys that named a backend, now the option of a config group (``matting.backend=rvm`` is
# ``matting=rvm``), and old groups that are gone (with why no choice is needed).
OLD_CHOICES = {
    **{f"{g}.backend": g for g in ("detect", "matting", "landmarks", "parsing", "albedo")},
    "fit3dmm.coarse_backend": "fit_3dmm_coarse",
}
OLD_GROUPS = {"tracker": "the FLAME tracker has one implementation (its settings: fit_flame.*)"}


def rename_old_keys(argv: list[str]) -> tuple[list[str], list[str]]:
    """`argv` with old key names (`OLD_KEYS`) in overrides renamed, and a note for each."""
    argv, notes, drop = list(argv), [], set()
    for i in _override_indices(argv):
        sign, rest = _split_sign(argv[i])
        key, eq, value = rest.partition("=")
        if eq and key in OLD_GROUPS:
            notes.append(f"{argv[i]} is ignored: {OLD_GROUPS[key]}")
            drop.add(i)
            continue
        if eq and key in OLD_CHOICES and not value.startswith("{"):
            notes.append(f"{key}={value} is now {OLD_CHOICES[key]}={value}")
            argv[i] = f"{OLD_CHOICES[key]}={value}"
            continue
        for old, new in OLD_KEYS:
            if key == old or key.startswith(old + "."):
                renamed = new + key[len(old) :]
                notes.append(f"{key} is now {renamed}")
                argv[i] = f"{sign}{renamed}{eq}{value}"
                break
    return [a for i, a in enumerate(argv) if i not in drop], notes


def _split_sign(arg: str) -> tuple[str, str]:
    """(``+``, ``++``, ``~`` or "", the rest) of an override."""
    n = len(arg) - len(arg.lstrip("+~"))
    return arg[:n], arg[n:]


def check_overrides(argv: list[str], conf_dir: Path) -> str | None:
    """One-line error for an override of our schema that Hydra would refuse in five lines, or
    accept and ignore (``+fit_flame.w.lmkk=1``): unknown keys (with the nearest valid key), wrong
    types, ``+`` on an existing key, ``~`` on a schema key. Group choices are left to
    `check_group_choices`, ``hydra.*`` keys to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = override_args(argv)
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as e:
        return f"cannot read the command line: {str(e).splitlines()[0]}"
    from prep.config.schema_keys import SchemaKeys

    schemas = [SchemaKeys(c) for c in group_choices(args, conf_dir)]
    for o in overrides:
        key = o.key_or_group
        if "/" in key or "@" in key or key.split(".")[0] == "hydra":
            continue
        if "." not in key and (conf_dir / key).is_dir():
            continue  # a config group: check_group_choices
        for schema in schemas:  # a key must suit every option a sweep picks
            if error := schema.check(o):
                return error
    return None


def group_choices(args: list[str], conf_dir: Path) -> list[dict[str, str]]:
    """The option of each config group a run composes: conf/config.yaml's defaults list, then
    ``group=option`` overrides. A sweep over a group's options (``matting=rvm,modnet``) gives
    one more choice per further option, the other groups as in the first."""
    from prep.config.backends import default_options

    first = default_options(conf_dir)
    more: list[tuple[str, str]] = []
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if value and "." not in key and "/" not in key and (conf_dir / key).is_dir():
            options = [v for v in value.split(",") if v]
            first[key] = options[0]
            more += [(key, v) for v in options[1:]]
    return [first] + [{**first, key: v} for key, v in more]


def print_help(conf_dir: Path) -> None:
    """Our own short --help page (Hydra's full one stays available as --hydra-help)."""
    groups = {
        p.name: sorted(q.stem for q in p.glob("*.yaml"))
        for p in sorted(conf_dir.iterdir())
        if p.is_dir() and p.name not in ("hydra", "stage") and list(p.glob("*.yaml"))
    }
    stages = sorted(q.stem for q in (conf_dir / "stage").glob("*.yaml"))
    lines = [
        "usage: python launch.py [key=value ...] [-m] [--cfg job] [--hydra-help]",
        "",
        "Turn a talking-head video into a head-avatar dataset (see README.md).",
        "",
        "what to run:",
        "  dataset=" + "|".join(groups.pop("dataset", [])) + "   subject=<name>",
        "  stage=all|" + "|".join(s for s in stages if s != "all"),
        "  only=true (just that stage)   force=true (re-run it)   debug=true (tracebacks)",
        "",
        "inputs and camera:",
        "  dataset.video=<file>   dataset.images=<folder>   dataset.root=<release folder>",
        "  fx= fy= cx= cy=   intrinsics in pixels of the original video (null = estimated)",
        "  work_dir=<dir> (outputs/subjects)   device=cpu|cuda   assets.<name>=<path>",
        "",
        "backends (config groups):",
        *(f"  {g}={'|'.join(opts)}" for g, opts in groups.items()),
        "",
        "settings: <stage>.<key>=<value>, e.g. extract_frames.fps=25 crop.image_size=512",
        "  fit_flame.w.smooth_pose=10; shared: flame.n_shape=100 logger.mode=online",
        "  a backend's own: <stage>.backend.<key> (matting=rvm matting.backend.variant=resnet50)",
        "  every key: python launch.py --cfg job; one stage's: --cfg job --package fit_flame",
        "",
        "examples:",
        "  python launch.py                                         # the built-in demo",
        "  python launch.py dataset=custom dataset.video=me.mp4     # your clip, all stages",
        "  python launch.py dataset=hdtf subject=<clip> stage=fit_flame fx=1539.67",
        "  python launch.py -m dataset=insta subject=bala,justin stage=fit_flame \\",
        "      fit_flame.w.smooth_pose=1,10,100                    # a sweep (multirun)",
        "  python launch.py stage=assets                            # model files: status",
        "",
        "errors are one line (README: Troubleshooting); Hydra's own help: --hydra-help",
    ]
    print("\n".join(lines))
