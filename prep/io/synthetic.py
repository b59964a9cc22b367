"""Synthetic test clips written with PyAV: known frame content, timing, rotation and audio.

Used by the tests and by bench/extract_frames.py. Every frame carries its index as a barcode
(`BARS` black/white bars in the top half) that survives H.264 compression, so a test can tell
which source frame a decoded frame came from (`read_index`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BARS = 10  # bits of the frame-index barcode (indices up to 1023)


def pattern_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame `i`: index barcode on top, a colour gradient and a red corner marker below.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    img = np.empty((height, width, 3), np.uint8)
    xs = np.linspace(0, 255, width, dtype=np.float32)
    ys = np.linspace(0, 255, height, dtype=np.float32)
    img[..., 0] = xs[None, :].astype(np.uint8)
    img[..., 1] = ys[:, None].astype(np.uint8)
    img[..., 2] = 128
    bar_w = width // BARS
    bits = (i >> np.arange(BARS)) & 1
    top = np.repeat(bits * 255, bar_w).astype(np.uint8)
    img[: height // 2, : bar_w * BARS] = top[None, :, None]
    # Red block in the bottom-left corner: shows the orientation of a rotated clip.
    s = max(2, min(width, height) // 8)
    img[height - s :, :s] = (255, 0, 0)
    return img


def read_index(rgb: np.ndarray) -> int:
    """Frame index from a decoded `pattern_frame` (upright orientation)."""
    h, w = rgb.shape[:2]
    bar_w = w // BARS
    row = rgb[h // 4, :, :].astype(np.float32).mean(axis=1)
    centres = (np.arange(BARS) * bar_w + bar_w // 2).astype(int)
    bits = row[centres] > 127
    return int(np.sum(bits.astype(int) << np.arange(BARS)))


def make_clip(
    path: Path | str,
    n_frames: int = 20,
    size: tuple[int, int] = (64, 48),
    fps: float = 25.0,
    times_s: Sequence[float] | None = None,
    rotation_deg: int = 0,
    audio_hz: float | None = None,
    audio_rate: int = 44100,
    crf: int = 10,
    preset: str = "ultrafast",
    frame_fn=None,
) -> Path:
    """Write a synthetic H.264 clip.

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .mov).
        n_frames: number of frames.
        size: (width, height) of the stored frames (even).
        fps: nominal frame rate.
        times_s: presentation time of every frame (variable frame rate); None = i / fps.
        rotation_deg: counter-clockwise display rotation stored as a display matrix.
        audio_hz: add an AAC sine tone of this frequency lasting the clip's duration.
        audio_rate: audio sample rate (Hz).
        crf: x264 quality (low = near lossless, so barcodes stay crisp).
        preset: x264 preset.
        frame_fn: ``frame_fn(i, width, height) -> RGB`` replacing `pattern_frame`.
    """
    path = Path(path)
    w, h = size
    make = frame_fn or pattern_frame
    tb = Fraction(1, 90000)
    times = list(times_s) if times_s is not None else [i / fps for i in range(n_frames)]
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = tb
        vs.codec_context.time_base = tb
        vs.options = {"crf": str(crf), "preset": preset}
        if rotation_deg:
            vs.set_display_rotation(rotation_deg)
        aus = None
        if audio_hz:
            aus = out.add_stream("aac", rate=audio_rate)
            aus.layout = "mono"
        for i, t in enumerate(times[:n_frames]):
            frame = av.VideoFrame.from_ndarray(make(i, w, h), format="rgb24")
            frame.pts, frame.time_base = int(round(t / tb)), tb
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if aus is not None and audio_hz:
            duration = (times[n_frames - 1] if n_frames else 0) + 1.0 / fps
            write_tone(out, aus, audio_hz, audio_rate, duration)
    return path


def write_tone(out, stream, hz: float, rate: int, duration_s: float) -> None:
    n = int(round(duration_s * rate))
    t = np.arange(n) / rate
    pcm = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    chunk = 1024
    for i0 in range(0, n, chunk):
        data = pcm[None, i0 : i0 + chunk]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, i0, Fraction(1, rate)
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)
