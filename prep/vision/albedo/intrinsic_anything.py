"""IntrinsicAnything backend: a user's install run as a subprocess, as HRAvatar does.

HRAvatar runs ``python IntrinsicAnything/inference.py --input_dir <subject>/image --model_dir
<weights>/albedo --output_dir <subject>/albedo --ddim 100 --batch_size 10 --image_interval 3``:
the diffusion model decomposes the frames whose number is a multiple of `image_interval`. Two
``inference.py`` exist: HRAvatar's vendored copy (``preprocess/submodules/IntrinsicAnything``)
has ``--image_interval``; zju3dv/IntrinsicAnything's own does not (argparse exits 2 on it) and
decomposes every image of the folder. We read the script's ``add_argument`` options, pass only
those it accepts, and for a script without ``--image_interval`` give it a folder of links to the
same frames HRAvatar's copy would pick. Both write ``<output_dir>/<input stem>.<ext>``.

The install lives outside our environment (its own interpreter, `albedo.backend.python`). Whatever
images it wrote are matched to frames by the number in their file names, resized to the frame
size, and the skipped frames are filled by blending the nearest decomposed frames before and
after in linear RGB, weighted by distance in time.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from prep.errors import MissingAssetError, PrepError
from prep.io.files import read_image
from prep.vision.albedo.decompose import linear_to_srgb, srgb_to_linear

log = logging.getLogger(__name__)

IA_URL = "https://github.com/zju3dv/IntrinsicAnything (weights: HF LittleFrog/IntrinsicAnything)"
_NUMBER = re.compile(r"(\d+)")


_OPTION = re.compile(r"""add_argument\(\s*['"](--[\w-]+)['"]""")
REQUIRED = ("--input_dir", "--model_dir", "--output_dir")


def script_options(script: Path) -> set[str]:
    """The ``--options`` an ``inference.py`` declares with argparse (read, not run)."""
    return set(_OPTION.findall(Path(script).read_text(errors="replace")))


def ia_command(cfg, input_dir: Path, output_dir: Path, options: set[str]) -> list[str]:
    """The subprocess command line for `cfg` (an IntrinsicAnythingConfig), with only the
    `options` the script accepts: HRAvatar's settings for ``--ddim``, ``--batch_size``,
    ``--image_interval``."""
    script = Path(cfg.script).expanduser()
    missing = [o for o in REQUIRED if o not in options]
    if missing:
        raise PrepError(f"{script} is not IntrinsicAnything's inference.py (no {missing[0]})")
    model_dir = Path(cfg.model_dir).expanduser()
    cmd = [
        cfg.python,
        str(script),
        "--input_dir",
        str(input_dir),
        "--model_dir",
        str(model_dir),
        "--output_dir",
        str(output_dir),
    ]
    settings = {
        "--ddim": cfg.ddim,
        "--batch_size": cfg.batch_size,
        "--image_interval": cfg.image_interval,
    }
    for option, value in settings.items():
        if option in options:
            cmd += [option, str(value)]
    return cmd


def stage_every_nth(input_dir: Path, stage_dir: Path, interval: int) -> int:
    """Links in `stage_dir` to the images of `input_dir` whose number is a multiple of
    `interval` (HRAvatar's ``int(image_index) % image_interval == 0``); returns their count."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(Path(input_dir).iterdir()):
        if p.stem.isdigit() and int(p.stem) % interval == 0:
            (stage_dir / p.name).symlink_to(p.resolve())
            n += 1
    return n


def check_install(cfg) -> None:
    """Raise MissingAssetError when the IntrinsicAnything script or weights are absent."""
    for path in (Path(cfg.script).expanduser(), Path(cfg.model_dir).expanduser()):
        if not path.exists():
            raise MissingAssetError(
                "intrinsic_anything_dir", path, IA_URL, "assets.intrinsic_anything_dir"
            )


def run_install(cfg, input_dir: Path, output_dir: Path) -> None:
    """Run IntrinsicAnything on `input_dir` (every `image_interval`-th frame), into
    `output_dir`, whichever of the two ``inference.py`` scripts is installed."""
    check_install(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = script_options(Path(cfg.script).expanduser())
    interval = max(1, cfg.image_interval)
    with tempfile.TemporaryDirectory(prefix="ia_input_") as tmp:
        if "--image_interval" not in options and interval > 1:  # zju3dv's script: stage frames
            stage_every_nth(input_dir, Path(tmp) / "image", interval)
            input_dir = Path(tmp) / "image"
        cmd = ia_command(cfg, input_dir, output_dir, options)
        log.info("running IntrinsicAnything: %s", " ".join(cmd))
        _run(cmd, cfg)


def _run(cmd: list[str], cfg) -> None:
    try:
        proc = subprocess.run(
            cmd,
            cwd=Path(cfg.script).expanduser().parent,
            capture_output=True,
            text=True,
            timeout=cfg.timeout_s,
        )
    except FileNotFoundError as e:
        raise PrepError(
            f"cannot start IntrinsicAnything ({cmd[0]}): {e}; set albedo.backend.python"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise PrepError(
            f"IntrinsicAnything ran past albedo.backend.timeout_s={cfg.timeout_s}"
        ) from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["(no output)"]
        raise PrepError(f"IntrinsicAnything failed (exit {proc.returncode}): {tail[0]}")


def produced_frames(output_dir: Path) -> dict[int, Path]:
    """Frame index -> image the install wrote (last number in the file name)."""
    found: dict[int, Path] = {}
    for p in sorted(output_dir.rglob("*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg") and not p.name.startswith("."):
            nums = _NUMBER.findall(p.stem)
            if nums:
                found.setdefault(int(nums[-1]), p)
    return found


def fill_plan(n_frames: int, have: list[int]) -> list[tuple[int, int, float]]:
    """For every frame: (before, after, weight of after) among decomposed frames `have`."""
    if not have:
        raise PrepError("IntrinsicAnything wrote no albedo images")
    have_a = np.asarray(sorted(have))
    plan = []
    for i in range(n_frames):
        k = int(np.searchsorted(have_a, i))
        if k < len(have_a) and have_a[k] == i:
            plan.append((i, i, 0.0))
        elif k == 0:
            plan.append((int(have_a[0]), int(have_a[0]), 0.0))
        elif k == len(have_a):
            plan.append((int(have_a[-1]), int(have_a[-1]), 0.0))
        else:
            a, b = int(have_a[k - 1]), int(have_a[k])
            plan.append((a, b, (i - a) / (b - a)))
    return plan


def load_albedo(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    """An albedo image as (H,W,3) uint8 at the frame size."""
    img = read_image(path, "rgb")
    if img.shape[:2] != tuple(size_hw):
        img = cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)
    return img


def blend(a: np.ndarray, b: np.ndarray, w_b: float) -> np.ndarray:
    """Blend two sRGB images in linear RGB."""
    if w_b == 0.0:
        return a
    return linear_to_srgb((1 - w_b) * srgb_to_linear(a) + w_b * srgb_to_linear(b))
