"""Download one source video with yt-dlp: retries, resumable ``.part`` files, clear failures.

yt-dlp resumes an interrupted download from its ``.part`` file (HTTP Range) both inside one call
(its own retries after a dropped connection) and across calls (a killed job picks up where it
stopped). Errors that retrying cannot fix (404, private or removed videos) stop at once and are
reported as `VideoUnavailableError`.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from prep.config.export import DownloadConfig
from prep.errors import MissingDependencyError, PrepError

log = logging.getLogger(__name__)

_PERMANENT = (
    "404",
    "410",
    "private video",
    "video unavailable",
    "has been removed",
    "not available",
    "account associated",
    "copyright",
    "403",
)


class VideoUnavailableError(PrepError):
    """The video cannot be downloaded (gone, private, or failing after every retry)."""

    def __init__(self, name: str, url: str, reason: str):
        self.name, self.url, self.reason = name, url, reason
        super().__init__(f"HDTF video {name} unavailable from {url}: {reason}")


class _YdlLog:
    """Route yt-dlp's messages to our logger (it prints to stdout otherwise)."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)


def _format(max_height: int) -> tuple[str, dict]:
    if shutil.which("ffmpeg"):  # separate video and audio streams need ffmpeg to merge
        fmt = (
            f"bv*[height<={max_height}][ext=mp4]+ba[ext=m4a]/"
            f"b[height<={max_height}][ext=mp4]/b[height<={max_height}]/b"
        )
        return fmt, {"merge_output_format": "mp4"}
    return f"b[height<={max_height}][ext=mp4]/b[height<={max_height}]/b", {}


def existing_download(folder: Path, name: str) -> Path | None:
    """A finished download of `name` in `folder` (yt-dlp renames .part files when done)."""
    for p in sorted(folder.glob(f"{glob_escape(name)}.*")):
        if p.suffix in (".mp4", ".mkv", ".webm", ".mov") and ".part" not in p.suffixes:
            return p
    return None


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def fetch_video(name: str, url: str, folder: Path, cfg: DownloadConfig) -> Path:
    """Download `url` to ``<folder>/<name>.<ext>`` unless already there; returns the file.

    Raises:
        VideoUnavailableError: permanent failure, or every retry failed.
        MissingDependencyError: yt-dlp is not installed.
    """
    done = existing_download(folder, name)
    if done is not None:
        return done
    try:
        import yt_dlp
    except ImportError as e:
        raise MissingDependencyError("yt-dlp") from e
    folder.mkdir(parents=True, exist_ok=True)
    fmt, extra = _format(cfg.max_height)
    opts = {
        "outtmpl": str(folder / f"{name}.%(ext)s"),
        "format": fmt,
        "continuedl": True,
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "socket_timeout": cfg.socket_timeout_s,
        "noprogress": True,
        "quiet": True,
        "no_warnings": False,
        "noplaylist": True,
        "logger": _YdlLog(),
        "overwrites": False,
        **extra,
    }
    last = "no attempt made"
    for attempt in range(1, max(cfg.retries, 1) + 1):
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                ydl.download([url])
        except yt_dlp.utils.DownloadError as e:
            last = str(e).replace("ERROR: ", "").strip()
            if any(k in last.lower() for k in _PERMANENT):
                raise VideoUnavailableError(name, url, last) from None
            log.warning("download %s attempt %d/%d failed: %s", name, attempt, cfg.retries, last)
            time.sleep(min(2.0**attempt, 30.0) * 0.25)
            continue
        done = existing_download(folder, name)
        if done is not None:
            log.info("downloaded %s -> %s", url, done)
            return done
        last = "yt-dlp finished without writing a file"
    raise VideoUnavailableError(name, url, f"failed after {cfg.retries} attempts: {last}")
