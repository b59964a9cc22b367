"""IntrinsicAnything: both published ``inference.py`` scripts run, outputs mapped to frames.

The two fakes declare the argparse options of the real scripts and follow their file handling:
zju3dv/IntrinsicAnything ``inference.py`` (options lines 356-386: no ``--image_interval``, so
argparse exits 2 on it; ``load_scene`` lines 211-232 takes every image of ``--input_dir`` and
writes ``<output_dir>/<stem>.<ext>``) and HRAvatar's vendored copy
(Pixel-Talk/HRAvatar ``preprocess/submodules/IntrinsicAnything/inference.py``: the same plus
``--image_interval``, keeping the stems with ``int(image_index) % image_interval == 0``).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from prep.config.render import IntrinsicAnythingConfig
from prep.errors import PrepError
from prep.vision.albedo.intrinsic_anything import (
    ia_command,
    produced_frames,
    run_install,
    script_options,
)

FAKE = """
import argparse, os
import cv2
parser = argparse.ArgumentParser()
parser.add_argument('--input_dir', type=str, default='data/objects')
parser.add_argument('--mask_dir', type=str, default=None)
parser.add_argument('--output_dir', type=str, default='data/object_mask')
parser.add_argument('--model_dir', type=str, default='None')
parser.add_argument('--ddim', type=int, default=200)
parser.add_argument('--batch_size', type=int, default=1)
parser.add_argument('--padding', type=int, default=10)
parser.add_argument('--inference_padding', type=int, default=0)
parser.add_argument('--guidance_dir', type=str, default=None)
parser.add_argument('--guidance', type=float, default=0)
parser.add_argument('--splits_vertical', type=int, default=1)
parser.add_argument('--splits_horizontal', type=int, default=1)
parser.add_argument('--splits_overlap', type=int, default=0)
parser.add_argument('--local-rank', type=int, default=None)
EXTRA
args = parser.parse_args()
interval = getattr(args, "image_interval", 1)
os.makedirs(args.output_dir, exist_ok=True)
for name in sorted(os.listdir(args.input_dir)):
    stem, ext = name.rsplit(".", 1)
    if int(stem) % interval:
        continue
    img = cv2.imread(os.path.join(args.input_dir, name))
    img[:] = (int(stem), 7, 9)  # the frame number, to check the mapping back
    cv2.imwrite(os.path.join(args.output_dir, stem + "." + ext), img)
"""
HRAVATAR_EXTRA = "parser.add_argument('--image_interval', type=int, default=1)"


def _install(root: Path, kind: str) -> IntrinsicAnythingConfig:
    (root / "weights" / "albedo").mkdir(parents=True)
    extra = HRAVATAR_EXTRA if kind == "hravatar" else ""
    (root / "inference.py").write_text(textwrap.dedent(FAKE).replace("EXTRA", extra))
    return IntrinsicAnythingConfig(
        python=sys.executable,
        script=str(root / "inference.py"),
        model_dir=str(root / "weights" / "albedo"),
        image_interval=3,
    )


def _frames(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:06d}.png"), np.full((8, 8, 4), 200, np.uint8))
    return folder


@pytest.mark.parametrize("kind", ["zju3dv", "hravatar"])
def test_both_scripts_decompose_the_same_frames(tmp_path, kind):
    cfg = _install(tmp_path / kind, kind)
    images = _frames(tmp_path / "image", 8)
    run_install(cfg, images, tmp_path / "albedo_raw")
    produced = produced_frames(tmp_path / "albedo_raw")
    assert sorted(produced) == [0, 3, 6]  # HRAvatar's rule, also for zju3dv's script
    for i, path in produced.items():
        assert cv2.imread(str(path))[0, 0].tolist() == [i, 7, 9]


def test_only_accepted_options_are_passed(tmp_path):
    zju = _install(tmp_path / "zju", "zju3dv")
    hra = _install(tmp_path / "hra", "hravatar")
    z = ia_command(zju, Path("in"), Path("out"), script_options(Path(zju.script)))
    h = ia_command(hra, Path("in"), Path("out"), script_options(Path(hra.script)))
    assert "--image_interval" not in z and h[h.index("--image_interval") + 1] == "3"
    assert z[z.index("--ddim") + 1] == "100" and z[z.index("--batch_size") + 1] == "10"


def test_zju3dv_script_rejects_image_interval(tmp_path):
    """Why the option must not be passed: argparse stops the real script with exit 2."""
    cfg = _install(tmp_path / "zju", "zju3dv")
    import subprocess

    out = subprocess.run(
        [sys.executable, cfg.script, "--image_interval", "3"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "unrecognized arguments: --image_interval" in out.stderr


def test_a_script_without_the_inputs_is_refused(tmp_path):
    bad = tmp_path / "inference.py"
    bad.write_text("import argparse\nargparse.ArgumentParser().add_argument('--x')\n")
    with pytest.raises(PrepError, match="not IntrinsicAnything's inference.py"):
        ia_command(
            IntrinsicAnythingConfig(script=str(bad)), Path("i"), Path("o"), script_options(bad)
        )
