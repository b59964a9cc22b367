"""Video decode with PyAV: streaming frames, metadata, audio (H.264 writing: `video_writer`).

Frames are RGB uint8 arrays of shape (H, W, 3) in display orientation: the rotation a phone
stores as a display matrix (or as the legacy ``rotate`` tag) is applied with `np.rot90`, so
frame pixels match what a player shows. Timestamps are presentation times in seconds from the
start of the stream (the stream's first pts is time 0), taken from the packets, never computed
from the frame index, so variable-frame-rate clips keep their real timing.

Every error a user can cause (missing file, a file that is not a video, an empty or truncated
video, a non-positive rate) is raised as a one-line `BadInputError`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from prep.errors import BadInputError

log = logging.getLogger(__name__)

# Errors PyAV raises for unreadable or corrupt data (all subclass av.FFmpegError / OSError).
_AV_ERRORS = (av.FFmpegError, OSError, ValueError)


# ---- reading ----------------------------------------------------------------------------------


@dataclass
class AudioInfo:
    """The first audio stream of a file."""

    codec: str
    sample_rate: int  # Hz
    channels: int
    duration_s: float | None


@dataclass
class VideoInfo:
    """Metadata of a video file, as far as headers tell (frame counts come from decoding).

    Attributes:
        path: the file.
        container: demuxer name ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", ...).
        codec: video codec name.
        width, height: frame size in display orientation (after rotation), pixels.
        coded_width, coded_height: size as stored in the stream.
        rotation_deg: counter-clockwise rotation applied for display (0, 90, 180, 270).
        fps: average frame rate from the headers (frames per second).
        n_frames_header: frame count the container claims (None when absent; not trusted).
        duration_s: stream duration from the headers.
        audio: the first audio stream, if any.
    """

    path: Path
    container: str
    codec: str
    width: int
    height: int
    coded_width: int
    coded_height: int
    rotation_deg: int
    fps: float
    n_frames_header: int | None
    duration_s: float | None
    audio: AudioInfo | None

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        return d


class Frame(NamedTuple):
    """One decoded frame: output index, presentation time (s) and RGB pixels (H, W, 3) uint8.

    Consecutive frames repeated by resampling share one array: copy before modifying it.
    """

    index: int  # type: ignore[assignment]  # a NamedTuple field may shadow tuple.index
    pts_s: float
    rgb: np.ndarray


def _check_file(path: Path | str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"video not found: {p}")
    if p.is_dir():
        raise BadInputError(f"{p} is a folder, not a video file (for images use dataset.images)")
    if p.stat().st_size == 0:
        raise BadInputError(f"video {p} is empty (0 bytes)")
    return p


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except _AV_ERRORS as e:
        raise BadInputError(
            f"cannot read {path} as a video (not a video, or truncated): {e}"
        ) from e
    if not container.streams.video:
        container.close()
        raise BadInputError(f"{path} has no video stream")
    return container


def _rotation_of(stream, first_frame: av.VideoFrame | None) -> int:
    """Counter-clockwise display rotation in degrees, a multiple of 90 in [0, 360)."""
    deg = 0.0
    if first_frame is not None:
        deg = float(first_frame.rotation or 0)
    if deg == 0:
        # Older muxers wrote a clockwise `rotate` tag instead of a display matrix.
        tags = {k.lower(): v for k, v in stream.metadata.items()}  # Matroska upper-cases
        tag = tags.get("rotate")
        if tag:
            try:
                deg = -float(tag)
            except ValueError:
                log.warning("ignoring unreadable rotate tag %r", tag)
    k = int(round(deg / 90.0)) % 4
    if abs(deg - round(deg / 90.0) * 90) > 1:
        log.warning("rotation %.1f deg is not a multiple of 90; using %d", deg, k * 90)
    return k * 90


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return 0.0


def probe(path: Path | str) -> VideoInfo:
    """Read a video's metadata; decodes the first frame to learn its rotation.

    Raises:
        BadInputError: missing, empty, unreadable file, no video stream, or no decodable frame.
    """
    p = _check_file(path)
    with _open(p) as container:
        vs = container.streams.video[0]
        first = _first_frame(container, vs, p)
        rot = _rotation_of(vs, first)
        cw, ch = first.width, first.height
        w, h = (ch, cw) if rot in (90, 270) else (cw, ch)
        duration_s = float(vs.duration * time_base(vs)) if vs.duration else None
        if duration_s is None and container.duration:
            duration_s = container.duration / av.time_base
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0]
            a_dur = float(a.duration * time_base(a)) if a.duration else duration_s
            audio = AudioInfo(a.codec_context.name, int(a.rate or 0), int(a.channels or 0), a_dur)
        return VideoInfo(
            path=p,
            container=container.format.name,
            codec=vs.codec_context.name,
            width=w,
            height=h,
            coded_width=cw,
            coded_height=ch,
            rotation_deg=rot,
            fps=_stream_fps(vs),
            n_frames_header=int(vs.frames) or None,
            duration_s=duration_s,
            audio=audio,
        )


def _first_frame(container, vs, path: Path) -> av.VideoFrame:
    try:
        for frame in container.decode(vs):
            return frame
    except _AV_ERRORS as e:
        raise BadInputError(f"no frame of {path} could be decoded (corrupt video): {e}") from e
    raise BadInputError(f"video {path} has no frames")


def _raw_frames(
    path: Path, start_s: float | None
) -> Generator[tuple[float, av.VideoFrame, int], None, None]:
    """Decoded frames with their time (s, from stream start) and the display rotation.

    Stops with a warning at the first decode error after at least one frame (truncated file);
    raises BadInputError when nothing decodes.
    """
    with _open(path) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        tb = float(time_base(vs))
        t0 = vs.start_time or 0
        if start_s and start_s > 2.0:
            # Jump near the start time (to the keyframe before it), then decode forward.
            container.seek(int(start_s / tb) + t0 - int(1.0 / tb), stream=vs, backward=True)
        fallback_dt = 1.0 / (_stream_fps(vs) or 25.0)
        n, rot, last_t = 0, None, None
        frames = container.decode(vs)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except _AV_ERRORS as e:
                if n == 0:
                    raise BadInputError(f"no frame of {path} could be decoded: {e}") from e
                log.warning("%s: decoding stopped after %d frames (truncated? %s)", path, n, e)
                break
            if rot is None:
                rot = _rotation_of(vs, frame)
            if frame.pts is not None:
                t = (frame.pts - t0) * tb
            else:
                t = 0.0 if last_t is None else last_t + fallback_dt
            last_t = t
            n += 1
            yield t, frame, rot
        if n == 0:
            raise BadInputError(f"video {path} has no decodable frames")


def time_base(stream: av.stream.Stream) -> Fraction:
    """A stream's time base (PyAV types it optional; every demuxed stream has one)."""
    if stream.time_base is None:
        raise BadInputError(f"stream {stream.index} has no time base")
    return stream.time_base


def _to_rgb(frame: av.VideoFrame, rot: int, pix_fmt: str = "rgb24") -> np.ndarray:
    rgb: np.ndarray = frame.to_ndarray(format=pix_fmt)
    if rot:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rot // 90))
    return rgb


def iter_frames(
    path: Path | str,
    fps: float | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
    skip: Callable[[int], bool] | None = None,
    pix_fmt: str = "rgb24",
) -> Iterator[Frame]:
    """Stream a video's frames in display orientation, optionally resampled to `fps`.

    With ``fps=None`` every decoded frame is returned with its own timestamp (variable frame
    rate kept). With a target rate, output frame k shows the source frame whose timestamp is
    nearest to ``start + k / fps``, so frames are dropped or repeated by time, not by index.

    Args:
        path: video file.
        fps: target rate (frames/s, > 0) or None for the native frames.
        start_s: drop frames before this time (s).
        end_s: drop frames at or after this time (s).
        max_frames: stop after this many output frames.
        skip: ``skip(index) -> True`` leaves that frame's pixels unconverted (``rgb=None``),
            for resuming: decoding still runs, so timestamps stay exact.
        pix_fmt: "rgb24", or "bgr24" to hand frames straight to OpenCV.

    Yields:
        Frame(index, pts_s, rgb): output index from 0, time in seconds (the sampling time when
        resampling), RGB uint8 (H, W, 3).
    """
    if fps is not None and not (fps > 0 and np.isfinite(fps)):
        raise BadInputError(f"frame rate must be positive, got fps={fps}")
    p = _check_file(path)
    lo = start_s or 0.0
    hi = end_s if end_s is not None else float("inf")
    if hi <= lo:
        raise BadInputError(f"empty time range [{lo}, {hi}) s for {p}")
    decoded = _raw_frames(p, start_s)
    # Decoders return frames in presentation order: stop decoding at the end of the range.
    raw = itertools.takewhile(lambda item: item[0] < hi, decoded)

    def convert(i: int, frame: av.VideoFrame, rot: int) -> np.ndarray | None:
        return None if skip is not None and skip(i) else _to_rgb(frame, rot, pix_fmt)

    out = _native(raw, lo, convert) if fps is None else _resampled(raw, lo, hi, fps, convert)
    n = 0
    try:
        for frame in out:
            if max_frames is not None and n >= max_frames:
                break
            yield frame
            n += 1
    finally:
        decoded.close()  # closes the container now, not at garbage collection
    if n == 0:
        raise BadInputError(f"no frames of {p} fall in the time range [{lo}, {hi}) s")


def _native(raw, lo: float, convert) -> Iterator[Frame]:
    i = 0
    for t, frame, rot in raw:
        if t < lo - 1e-6:
            continue
        yield Frame(i, float(t), convert(i, frame, rot))
        i += 1


def _resampled(raw, lo: float, hi: float, fps: float, convert) -> Iterator[Frame]:
    """Nearest-timestamp resampling of a frame stream.

    Target k (time ``lo + k / fps``) takes the source frame nearest in time: a source frame
    serves every target before the midpoint to its successor. The last source frame lasts one
    source interval, so an N-frame clip at its own rate maps to exactly N frames.
    """
    k = 0
    prev: tuple[float, av.VideoFrame, int] | None = None
    dt = 1.0 / fps
    for cur in raw:
        if prev is not None:
            dt = cur[0] - prev[0] if cur[0] > prev[0] else dt
            yield from _serve(prev, 0.5 * (prev[0] + cur[0]), lo, hi, fps, k, convert)
            k = _n_before(0.5 * (prev[0] + cur[0]), lo, hi, fps, k)
        prev = cur
    if prev is not None:
        end = prev[0] + dt
        yield from _serve(prev, end, lo, hi, fps, k, convert)


def _n_before(until: float, lo: float, hi: float, fps: float, k: int) -> int:
    """Index of the first target at or after `until` (or `hi`), counting on from `k`."""
    while lo + k / fps < min(until, hi) - 1e-7:  # a target on a boundary goes to the later frame
        k += 1
    return k


def _serve(src, until, lo, hi, fps, k, convert) -> Iterator[Frame]:
    """Yield source frame `src` for every target from index `k` up to time `until`."""
    k_end = _n_before(until, lo, hi, fps, k)
    rgb = None
    for j in range(k, k_end):
        if rgb is None:
            rgb = convert(j, src[1], src[2])
        yield Frame(j, lo + j / fps, rgb)


def count_frames(path: Path | str) -> int:
    """Number of frames that actually decode (headers are often wrong for VFR or cut files)."""
    p = _check_file(path)
    n = 0
    with _open(p) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        try:
            for _ in container.decode(vs):
                n += 1
        except _AV_ERRORS as e:
            log.warning("%s: decoding stopped after %d frames (truncated? %s)", p, n, e)
    return n
