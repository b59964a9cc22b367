"""H.264 mp4 writing with PyAV (cv2 cannot write H.264 here): atomic, streaming, any frame size.

Frames are RGB uint8 arrays of shape (H, W, 3); the file appears under its final name only once
the encoder is flushed, so a killed run never leaves a truncated video behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from prep.errors import BadInputError
from prep.io.files import TMP_PREFIX
from prep.io.video import _AV_ERRORS


def _rate(fps: float) -> Fraction:
    """A rational frame rate for the encoder (29.97 -> 30000/1001)."""
    if not (fps > 0 and np.isfinite(fps)):
        raise BadInputError(f"video frame rate must be positive, got fps={fps}")
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Write RGB frames to an H.264 mp4 (yuv420p) atomically.

    The file appears under its final name only when `close` succeeds. Odd sizes are padded by
    one replicated row/column, because yuv420p needs even sizes. Use as a context manager::

        with VideoWriter(path, fps=25) as w:
            for rgb in frames:
                w.write(rgb)

    Args:
        path: output .mp4 path.
        fps: frames per second (> 0).
        crf: x264 constant rate factor (lower = better, 18 is visually lossless).
        preset: x264 speed preset.
    """

    def __init__(self, path: Path | str, fps: float, crf: int = 20, preset: str = "veryfast"):
        self.path = Path(path)
        self.rate = _rate(fps)
        self.crf, self.preset = int(crf), preset
        self.n_frames = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None  # (h, w) of the frames given to write
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, h: int, w: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a video is meant to be shared
        self._tmp = Path(tmp)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream, self._size = stream, (h, w)

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one frame.

        Args:
            frame_rgb: (H, W, 3) uint8 RGB, or (H, W) gray; every frame must have the first
                frame's size.
        """
        img = np.asarray(frame_rgb)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected (H,W,3) RGB frame, got shape {img.shape}")
        if img.dtype != np.uint8:
            raise ValueError(f"expected uint8 frame, got {img.dtype}")
        h, w = img.shape[:2]
        if self._container is None:
            self._open(h, w)
        elif (h, w) != self._size:
            raise ValueError(f"frame size {(h, w)} differs from the first frame's {self._size}")
        if h % 2 or w % 2:
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        container, stream = self._container, self._stream
        assert container is not None and stream is not None  # opened above
        for packet in stream.encode(frame):
            container.mux(packet)
        self.n_frames += 1

    def close(self) -> None:
        """Flush the encoder and move the file to its final name."""
        if self._container is None:
            if self.n_frames == 0:
                raise BadInputError(f"no frames were written to {self.path}")
            return
        assert self._stream is not None and self._tmp is not None  # opened with the container
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._container = None

    def abort(self) -> None:
        """Drop a partly written file."""
        if self._container is not None:
            with contextlib.suppress(*_AV_ERRORS):
                self._container.close()
            self._container = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def write_video(
    path: Path | str,
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int = 20,
    preset: str = "veryfast",
) -> int:
    """Write an iterable of RGB uint8 frames (H, W, 3) to an H.264 mp4; returns the frame count.

    Frames are consumed one at a time, so a generator keeps memory flat.
    """
    with VideoWriter(path, fps, crf=crf, preset=preset) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.n_frames
