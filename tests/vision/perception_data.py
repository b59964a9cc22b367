"""Helpers for detect/crop/matting tests: subjects built from real frames, typed stage contexts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from prep.io.files import read_image, write_image, write_json
from prep.pipeline import StageContext
from prep.subject import SubjectDir


def clip_frames(path: Path, n: int, step: int = 1) -> list[np.ndarray]:
    """The first `n` frames (every `step`-th) of a video as RGB uint8."""
    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray] = []
    i = 0
    while len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return out


def photo(shared_data: Path, stem: str) -> np.ndarray:
    """A photo from shared/data/photos by file-name prefix (p02, p08, p11)."""
    (p,) = sorted((shared_data / "photos").glob(f"{stem}*"))
    return read_image(p, "rgb")


def letterbox(rgb: np.ndarray, side: int = 512) -> np.ndarray:
    """`rgb` scaled to fit a grey side x side square, centred (photos of any size, one size)."""
    h, w = rgb.shape[:2]
    f = side / max(h, w)
    small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    out = np.full((side, side, 3), 127, np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def write_subject(subject: SubjectDir, frames: list[np.ndarray]) -> SubjectDir:
    """Write frames/%06d.jpg and meta/video.json the way extract_frames does."""
    for i, f in enumerate(frames):
        write_image(subject.frame_path(i), f, 95)
    h, w = frames[0].shape[:2]
    write_json(
        subject.video_json,
        {"n_frames": len(frames), "width": w, "height": h, "fps": 25.0, "frame_ext": ".jpg"},
    )
    return subject


def make_ctx(
    subject: SubjectDir, *overrides: str, force: bool = False, **sections: dict
) -> StageContext:
    """A StageContext with the composed default config (a custom clip) and `overrides` (Hydra's
    syntax: ``"matting=rvm"``), `sections` then replacing fields, e.g. crop={"scale": 2}."""
    from tests.conftest import compose

    cfg = compose("dataset=custom", "logger=none", *overrides)
    for name, values in sections.items():
        setattr(cfg, name, dataclasses.replace(getattr(cfg, name), **values))
    return StageContext(cfg, subject, "test", force=force, logger=None)
