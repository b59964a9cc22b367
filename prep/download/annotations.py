"""The HDTF release tables (github.com/MRzzm/HDTF, folder HDTF_dataset), parsed leniently.

One line per video or clip; the README gives the fields as

- ``<src>_video_url.txt``:        ``video name | youtube url``       (``Radio1 https://...``)
- ``<src>_annotion_time.txt``:    ``video name | clip1 range | ...`` (``Radio11.mp4 00:30-01:00``)
- ``<src>_crop_wh.txt``:          ``clip name | min_width | width | min_height | height``
                                  (``Radio11_0.mp4 557 478 0 478``: x0, w, y0, h in pixels)
- ``<src>_resolution.txt``:       ``video name | height`` the crop windows refer to

Fields are separated by spaces or ``|``; a name may contain spaces (everything before the
recognised trailing fields). Range k of video V is clip ``V_k``. Unlike the ingest (which fails on
a broken table), acquisition records a malformed line as a problem of that video or clip and goes
on with the others.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from prep.datasets.hdtf import parse_time_s
from prep.errors import BadInputError

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^[\d:.]+-[\d:.]+$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


@dataclass
class HdtfClip:
    """Clip k of a video: a time range and (when listed) a crop window."""

    name: str  # "<video>_<k>"
    video: str
    index: int
    start_s: float | None  # None when the range is malformed (see `problem`)
    end_s: float | None
    crop_xywh: tuple[int, int, int, int] | None = None
    problem: str | None = None


@dataclass
class HdtfVideo:
    """One source video of the release."""

    name: str
    url: str | None
    resolution: int | None = None
    clips: list[HdtfClip] = field(default_factory=list)


@dataclass
class HdtfRelease:
    """All tables of a release folder. problems: unparseable lines (file:line: why)."""

    videos: dict[str, HdtfVideo] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def video_of(self, subject: str) -> HdtfVideo:
        """The video a subject (a video name or a clip name ``<video>_<k>``) belongs to."""
        if subject in self.videos:
            return self.videos[subject]
        m = re.match(r"^(.+)_(\d+)$", subject)
        if m and m[1] in self.videos:
            return self.videos[m[1]]
        raise BadInputError(
            f"HDTF subject {subject!r} is in no *_video_url.txt of the release "
            f"({len(self.videos)} videos listed)"
        )


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".mp4") else name


def _lines(path: Path):
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield n, line


def _split(line: str) -> list[str]:
    if "|" in line:
        return [p.strip() for p in line.split("|") if p.strip()]
    return line.split()


def parse_range(text: str) -> tuple[float, float]:
    """``"00:30-01:00"`` -> (30.0, 60.0); raises BadInputError when malformed or empty."""
    a, sep, b = text.partition("-")
    if not sep:
        raise BadInputError(f"time range {text!r} has no '-'")
    start, end = parse_time_s(a), parse_time_s(b)
    if not end > start >= 0:
        raise BadInputError(f"time range {text!r} ends before it starts")
    return start, end


def _video(rel: HdtfRelease, name: str) -> HdtfVideo:
    return rel.videos.setdefault(name, HdtfVideo(name, None))


def _read_urls(rel: HdtfRelease, path: Path) -> None:
    for n, line in _lines(path):
        parts = _split(line)
        urls = [i for i, p in enumerate(parts) if _URL.match(p)]
        if not urls or urls[0] == 0:
            rel.problems.append(f"{path.name}:{n}: no '<name> <url>' in {line.strip()!r}")
            continue
        _video(rel, _stem(" ".join(parts[: urls[0]]))).url = parts[urls[0]]


def _read_times(rel: HdtfRelease, path: Path) -> None:
    for n, line in _lines(path):
        parts = _split(line)
        first = next(
            (i for i, p in enumerate(parts) if i > 0 and re.match(r"^[\d:.]+-", p)), len(parts)
        )
        video = _video(rel, _stem(" ".join(parts[:first])))
        for k, text in enumerate(parts[first:]):
            clip = HdtfClip(f"{video.name}_{k}", video.name, k, None, None)
            try:
                clip.start_s, clip.end_s = parse_range(text)
            except BadInputError as e:
                clip.problem = f"{path.name}:{n}: {e}"
                rel.problems.append(clip.problem)
            video.clips.append(clip)
        if first == len(parts):
            rel.problems.append(f"{path.name}:{n}: no time range in {line.strip()!r}")


def _read_crops(rel: HdtfRelease, path: Path) -> dict[str, tuple[int, int, int, int]]:
    crops = {}
    for n, line in _lines(path):
        parts = _split(line)
        try:
            x0, w, y0, h = (int(float(v)) for v in parts[-4:])
            if len(parts) < 5 or w <= 0 or h <= 0:
                raise ValueError("needs a name and a positive width and height")
        except ValueError as e:
            rel.problems.append(f"{path.name}:{n}: bad crop line {line.strip()!r} ({e})")
            continue
        crops[_stem(" ".join(parts[:-4]))] = (x0, y0, w, h)
    return crops


def _read_resolutions(rel: HdtfRelease, path: Path) -> None:
    for n, line in _lines(path):
        parts = _split(line)
        try:
            _video(rel, _stem(" ".join(parts[:-1]))).resolution = int(float(parts[-1]))
        except (ValueError, IndexError):
            rel.problems.append(f"{path.name}:{n}: bad resolution line {line.strip()!r}")


def read_release(folder: Path | str) -> HdtfRelease:
    """Parse every HDTF table in `folder` (``*_video_url.txt`` is required)."""
    folder = Path(folder)
    rel = HdtfRelease()
    url_files = sorted(folder.glob("*_video_url.txt"))
    if not url_files:
        raise BadInputError(
            f"no *_video_url.txt under {folder}: point download.annotations at "
            "the release's HDTF_dataset folder"
        )
    for p in url_files:
        _read_urls(rel, p)
    for p in sorted(folder.glob("*_anno*_time.txt")):
        _read_times(rel, p)
    for p in sorted(folder.glob("*_resolution.txt")):
        _read_resolutions(rel, p)
    crops: dict[str, tuple[int, int, int, int]] = {}
    for p in sorted(folder.glob("*_crop_wh.txt")):
        crops.update(_read_crops(rel, p))
    for video in rel.videos.values():
        for clip in video.clips:
            clip.crop_xywh = crops.get(clip.name)
    for msg in rel.problems:
        log.warning("HDTF tables: %s", msg)
    return rel
