"""The typed source description every dataset ingest returns, and helpers for image folders.

An ingest (`custom`, `insta`, `hdtf`, `demo`) only *describes* where a subject's frames come
from; stage extract_frames does the decoding and writing, identically for every dataset.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from prep.errors import BadInputError

if TYPE_CHECKING:
    from prep.io.video import VideoInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".flv")

# EXIF orientations (tag 0x0112) that swap width and height (rotations by 90/270 degrees).
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


@dataclass
class Extracted:
    """What decoding a source produced (before audio and metadata)."""

    timestamps_s: list[float]  # per frame, on the clip clock (first kept time = 0)
    n_skipped: int  # frames already on disk from an interrupted run
    size_wh: tuple[int, int]  # size of the written frames
    start_s: float  # kept range in source seconds: [start_s, end_s)
    end_s: float | None
    box_xywh: tuple[int, int, int, int] | None = None  # crop cut from every frame (source px)
    info: VideoInfo | None = None  # probe of a video source
    fps: float | None = None  # frame rate of an image sequence


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the written frames (OpenCV, pixel centres at integers)."""

    fx: float
    fy: float
    cx: float
    cy: float


@dataclass
class Source:
    """Where one subject's frames come from.

    Attributes:
        dataset: dataset kind (custom, insta, hdtf, demo).
        subject: subject name.
        video: the video file, when the input is a video.
        images: the image files in frame order, when the input is a folder of images.
        start_s: first time to keep (s from the video's start); None = from the start.
        end_s: end time (s, exclusive); None = to the end.
        crop_xywh: box (x0, y0, w, h) in display pixels cut out of every frame, or None.
        crop_ref_height: frame height the box was annotated at (the box is scaled when the
            local video has another height); None = same as the video.
        alpha: the images carry an alpha matte to write to matting/alpha (INSTA).
        provides_crop: the frames already are the face crop: write an identity crop transform
            and crop frames so stages detect/crop/matting are not needed (INSTA).
        intrinsics: camera intrinsics shipped with the dataset, in frame pixels.
        extra_files: annotation files the frames depend on (fingerprinted).
    """

    dataset: str
    subject: str
    video: Path | None = None
    images: list[Path] = field(default_factory=list)
    start_s: float | None = None
    end_s: float | None = None
    crop_xywh: tuple[int, int, int, int] | None = None
    crop_ref_height: int | None = None
    alpha: bool = False
    provides_crop: bool = False
    intrinsics: Intrinsics | None = None
    extra_files: list[Path] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """ "video" or "images"."""
        return "video" if self.video is not None else "images"

    @property
    def path(self) -> Path:
        """The video file, or the folder holding the images."""
        return self.video if self.video is not None else self.images[0].parent

    def fingerprint(self) -> dict[str, Any]:
        """Cheap fingerprint (paths, sizes, mtimes) of everything the frames are made from."""
        files = [self.video] if self.video is not None else self.images
        stats = [os.stat(p) for p in list(files) + list(self.extra_files)]
        return {
            "source": str(self.path.resolve()),
            "n_files": len(files),
            "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max(s.st_mtime_ns for s in stats),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary recorded in meta/video.json."""
        return {
            "dataset": self.dataset,
            "subject": self.subject,
            "kind": self.kind,
            "path": str(self.path),
            "start_s": self.start_s,
            "end_s": self.end_s,
            "crop_xywh": list(self.crop_xywh) if self.crop_xywh else None,
            "crop_ref_height": self.crop_ref_height,
            "alpha": self.alpha,
            "provides_crop": self.provides_crop,
        }


def natural_key(name: str) -> list[Any]:
    """Sort key putting "frame2" before "frame10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files of `folder` in natural order.

    Raises:
        BadInputError: the folder does not exist or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"image folder not found: {folder}")
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    ]
    if not files:
        raise BadInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return sorted(files, key=lambda p: natural_key(p.name))


def display_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image after its EXIF orientation, from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except OSError as e:
        raise BadInputError(f"cannot read image {path}: {e}") from e
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


def check_same_size(images: list[Path]) -> tuple[int, int]:
    """Common (width, height) of `images` in display orientation.

    Raises:
        BadInputError: naming the first image whose size differs from the first one's.
    """
    size = display_size(images[0])
    for p in images[1:]:
        s = display_size(p)
        if s != size:
            raise BadInputError(
                f"mixed image sizes in {images[0].parent}: {images[0].name} is "
                f"{size[0]}x{size[1]} but {p.name} is {s[0]}x{s[1]}; resize them to one size first"
            )
    return size


def load_image(path: Path, with_alpha: bool) -> np.ndarray:
    """RGB or RGBA uint8 in display orientation (EXIF honoured)."""
    try:
        with Image.open(path) as f:
            im = ImageOps.exif_transpose(f)
            if with_alpha and "A" not in im.getbands() and im.mode != "P":
                log.warning("%s has no alpha channel; using an opaque matte", path.name)
            return np.asarray(im.convert("RGBA" if with_alpha else "RGB"))
    except OSError as e:
        raise BadInputError(f"cannot read image {path}: {e}") from e
