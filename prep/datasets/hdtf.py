"""HDTF release ingest: ``<root>/<subject>.mp4`` plus the release's optional annotation files.

The HDTF release (github.com/MRzzm/HDTF, folder HDTF_dataset) ships, per source
(RD = radio, WDA, WRA), plain-text tables, one line per video, fields separated by spaces:

- ``<src>_annotion_time.txt``: ``Radio11.mp4 00:30-01:00 01:30-02:30``: talking-head time
  ranges (mm:ss or hh:mm:ss) of a downloaded video; range k becomes clip ``Radio11_k``.
- ``<src>_crop_wh.txt``: ``Radio11_1.mp4 557 478 0 478``: per clip ``x0 width y0 height``, a
  fixed face window in pixels of the video at the resolution listed in
- ``<src>_resolution.txt``: ``Radio11.mp4 720``: the frame height the window refers to.

They are looked for in ``<root>/annotations/`` (or ``<root>/HDTF_dataset/``). Subject
``Radio11_1`` reads ``<root>/Radio11_1.mp4`` when that split clip exists (no time range), else
``<root>/Radio11.mp4`` cut to range 1. Subject ``Radio11`` uses the whole video, cut to range 0
when the video has annotated ranges. The crop window of the clip is applied when listed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from prep.config import Config
from prep.datasets.base import VIDEO_SUFFIXES, Source
from prep.errors import BadConfigError, BadInputError

log = logging.getLogger(__name__)

ANNOTATION_DIRS = ("annotations", "HDTF_dataset")
_CLIP = re.compile(r"^(?P<video>.+)_(?P<k>\d+)$")


@dataclass
class HdtfAnnotations:
    """The release's tables, keyed by file stem (``Radio11``, ``Radio11_0``)."""

    time_ranges_s: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    crop_xywh: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    resolution: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def parse_time_s(text: str) -> float:
    """``"01:30"`` (mm:ss), ``"1:02:03"`` (hh:mm:ss) or ``"90.5"`` -> seconds."""
    try:
        parts = [float(p) for p in text.strip().split(":")]
    except ValueError as e:
        raise BadInputError(f"bad HDTF time stamp {text!r}") from e
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


def _time_range_s(text: str) -> tuple[float, float]:
    """``"01:30-02:10"`` -> (start, end) seconds (ValueError unless it is two times)."""
    start, end = (parse_time_s(t) for t in text.split("-"))
    return start, end


def _rows(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.replace("|", " ").split() for line in lines if line.strip()]


def read_annotations(root: Path) -> HdtfAnnotations:
    """Parse every annotation table found under `root` (missing tables are fine)."""
    ann = HdtfAnnotations()
    for d in ANNOTATION_DIRS:
        folder = root / d
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.txt")):
            name = path.name.lower()
            try:
                if name.endswith(("_annotion_time.txt", "_annotation_time.txt")):
                    for row in _rows(path):
                        ranges = [_time_range_s(r) for r in row[1:]]
                        ann.time_ranges_s[Path(row[0]).stem] = ranges
                elif name.endswith("_crop_wh.txt"):
                    for row in _rows(path):
                        x0, w, y0, h = (int(float(v)) for v in row[1:5])
                        ann.crop_xywh[Path(row[0]).stem] = (x0, y0, w, h)
                elif name.endswith("_resolution.txt"):
                    for row in _rows(path):
                        ann.resolution[Path(row[0]).stem] = int(float(row[1]))
                else:
                    continue
            except (ValueError, IndexError) as e:
                raise BadInputError(f"cannot parse HDTF annotation file {path}: {e}") from e
            ann.files.append(path)
    return ann


def _find_video(root: Path, stem: str) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        if (root / f"{stem}{suffix}").is_file():
            return root / f"{stem}{suffix}"
    return None


def source(cfg: Config, subject: str) -> Source:
    """The clip `subject` of the HDTF folder `dataset.root`, with its time range and crop."""
    if not cfg.dataset.root:
        raise BadConfigError("dataset=hdtf needs dataset.root=<folder holding <subject>.mp4>")
    root = Path(cfg.dataset.root).expanduser()
    ann = read_annotations(root)
    video, video_stem, k = _find_video(root, subject), subject, 0
    m = _CLIP.match(subject)
    if video is None and m is not None:
        video, video_stem, k = _find_video(root, m["video"]), m["video"], int(m["k"])
    if video is None:
        raise BadInputError(f"HDTF clip {subject!r} not found: no {root / subject}.mp4")
    src = Source("hdtf", subject, video=video, extra_files=list(ann.files))
    if video.stem == subject:  # a downloaded video (range 0 if annotated) or a split clip
        ranges = ann.time_ranges_s.get(subject, [])
    else:  # clip k of a downloaded video: its range is needed
        ranges = ann.time_ranges_s.get(video_stem, [])
        if k >= len(ranges):
            raise BadInputError(
                f"HDTF clip {subject!r}: {video.name} has {len(ranges)} annotated time ranges "
                f"(no clip {k}); add its *_annotion_time.txt under {root / 'annotations'}"
            )
    if ranges:
        src.start_s, src.end_s = ranges[k]
        log.info("HDTF %s: clip %d = %.1f-%.1f s of %s", subject, k, *ranges[k], video.name)
    src.crop_xywh = ann.crop_xywh.get(subject) or ann.crop_xywh.get(f"{video_stem}_{k}")
    if src.crop_xywh is not None:
        base = m["video"] if m is not None else video_stem
        src.crop_ref_height = ann.resolution.get(video_stem) or ann.resolution.get(base)
    return src
