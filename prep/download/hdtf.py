"""Acquire HDTF videos: download, cut every annotated clip, record what could not be had.

Files under the dataset root (``dataset.root``)::

    <video>.mp4                  the downloaded source (what ``dataset=hdtf`` ingests, cutting
                                 clip k on the fly with the tables in <root>/annotations/)
    processed/<video>_<k>.mp4    clip k cut, cropped and resized to 512x512, with audio
                                 (HDTF's own processing; use ``dataset.root=<root>/processed``)
    download_record.json         per video and clip: ok / unavailable / bad_range / error + why
    unavailable.txt              one line per video or clip that could not be produced

Concurrent jobs (a multirun over clips of one video) share work safely: a per-video lock
serialises the download, and the record is updated under its own lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prep.config.export import DownloadConfig
from prep.download.annotations import HdtfVideo
from prep.download.cut import cut_clip
from prep.download.fetch import VideoUnavailableError, fetch_video
from prep.errors import BadInputError, PrepError
from prep.io.files import read_json, write_bytes, write_json

log = logging.getLogger(__name__)

RECORD = "download_record.json"


@dataclass
class AcquireResult:
    """Outcome of `acquire` for the requested videos."""

    clips_ok: list[str] = field(default_factory=list)
    clips_failed: dict[str, str] = field(default_factory=dict)  # clip -> why
    videos_unavailable: dict[str, str] = field(default_factory=dict)  # video -> why
    download_s: float = 0.0


@contextmanager
def file_lock(path: Path):
    """Exclusive advisory lock on `path` (created if needed), blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _update_record(root: Path, videos: dict, clips: dict) -> None:
    with file_lock(root / ".locks" / "record.lock"):
        path = root / RECORD
        rec = read_json(path) if path.exists() else {"videos": {}, "clips": {}}
        rec["videos"].update(videos)
        rec["clips"].update(clips)
        write_json(path, rec)
        bad = [
            f"{k}\t{v['status']}\t{v.get('error', '')}"
            for part in ("videos", "clips")
            for k, v in sorted(rec[part].items())
            if v["status"] != "ok"
        ]
        write_bytes(root / "unavailable.txt", ("\n".join(bad) + "\n" if bad else "").encode())


def _check_writable(root: Path) -> None:
    try:
        (root / "processed").mkdir(parents=True, exist_ok=True)
        probe = root / ".locks" / f".probe-{os.getpid()}"
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BadInputError(
            f"cannot write HDTF downloads to {root} ({e.strerror}); set "
            "dataset.root=<a writable folder>"
        ) from None


def acquire(root: Path, videos: list[HdtfVideo], cfg: DownloadConfig) -> AcquireResult:
    """Download and cut `videos` into `root`, recording every outcome."""
    _check_writable(root)
    res = AcquireResult()
    for video in videos:
        t0 = time.time()
        url = cfg.url_override or video.url
        rec_v: dict = {"url": url}
        try:
            if not url:
                raise VideoUnavailableError(video.name, "-", "no URL in *_video_url.txt")
            with file_lock(root / ".locks" / f"{video.name}.lock"):
                raw = fetch_video(video.name, url, root, cfg)
            rec_v.update(status="ok", path=raw.name)
        except VideoUnavailableError as e:
            rec_v.update(status="unavailable", error=e.reason)
            res.videos_unavailable[video.name] = e.reason
            _update_record(root, {video.name: rec_v}, {})
            continue
        finally:
            res.download_s += time.time() - t0
        clips = {c.name: _cut(root, raw, video, c, cfg, res) for c in video.clips}
        _update_record(root, {video.name: rec_v}, clips)
    return res


def _cut(root: Path, raw: Path, video: HdtfVideo, clip, cfg: DownloadConfig, res) -> dict:
    dst = root / "processed" / f"{clip.name}.mp4"
    if clip.problem:
        res.clips_failed[clip.name] = clip.problem
        return {"status": "bad_range", "error": clip.problem}
    if not dst.exists():
        try:
            n = cut_clip(
                raw,
                dst,
                clip.start_s,
                clip.end_s,
                clip.crop_xywh,
                video.resolution,
                cfg.size,
                cfg.crf,
            )
        except PrepError as e:
            res.clips_failed[clip.name] = str(e)
            return {"status": "error", "error": str(e)}
    else:
        n = None
    res.clips_ok.append(clip.name)
    out = {
        "status": "ok",
        "path": f"processed/{dst.name}",
        "range_s": [clip.start_s, clip.end_s],
        "crop_xywh": clip.crop_xywh,
    }
    return out if n is None else {**out, "n_frames": n}
