"""Cut an annotated time range out of a source video, crop the face window, resize, keep audio.

HDTF's processing: split the video at the annotated ranges, crop the fixed window of
``*_crop_wh.txt`` (pixels of the video at the height in ``*_resolution.txt``; scaled when the
download has another height), resize to 512x512. Windows reaching outside the frame are padded
with black so the output stays square and undistorted. Output is H.264 + AAC, written atomically.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from prep.errors import BadInputError
from prep.io.files import atomic_path

log = logging.getLogger(__name__)


def crop_window(
    img: np.ndarray, xywh: tuple[int, int, int, int] | None, scale: float = 1.0
) -> np.ndarray:
    """Crop (x0, y0, w, h) * scale from an (H,W,3) image, padding outside the frame with black."""
    if xywh is None:
        return img
    x0, y0, w, h = (round(v * scale) for v in xywh)
    out = np.zeros((h, w, 3), img.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + w, img.shape[1]), min(y0 + h, img.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


def cut_clip(
    src: Path,
    dst: Path,
    start_s: float,
    end_s: float,
    crop_xywh: tuple[int, int, int, int] | None,
    ref_height: int | None,
    size: int,
    crf: int = 18,
) -> int:
    """Write frames with timestamps in [start_s, end_s) of `src` to `dst`; returns frame count.

    Raises:
        BadInputError: the source cannot be decoded or the range holds no frame.
    """
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise BadInputError(f"cannot open downloaded video {src}: {e}") from e
    with inp, atomic_path(dst) as tmp:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        fps = Fraction(vin.average_rate or 25).limit_denominator(1001)
        scale = vin.codec_context.height / ref_height if ref_height else 1.0
        n = _transcode(inp, vin, ain, tmp, fps, (start_s, end_s), crop_xywh, scale, size, crf)
        if n == 0:
            raise BadInputError(
                f"{src.name}: no frame between {start_s:.2f} s and {end_s:.2f} s "
                "(range beyond the video's end?)"
            )
    log.info("cut %s [%.2f, %.2f) s -> %s (%d frames)", src.name, start_s, end_s, dst.name, n)
    return n


def _transcode(inp, vin, ain, tmp: Path, fps, rng, crop_xywh, scale, size, crf) -> int:
    start_s, end_s = rng
    with av.open(str(tmp), "w", format="mp4") as out:
        vout = out.add_stream("libx264", rate=fps)
        vout.width = vout.height = size
        vout.pix_fmt = "yuv420p"
        vout.options = {"crf": str(crf), "preset": "veryfast"}
        aout = resampler = None
        if ain is not None:
            aout = out.add_stream("aac", rate=ain.codec_context.sample_rate)
            resampler = av.AudioResampler(
                format="fltp", layout="stereo", rate=ain.codec_context.sample_rate
            )
        inp.seek(int(max(start_s - 1.0, 0.0) * av.time_base))
        n, video_done, audio_done = 0, False, False
        streams = [s for s in (vin, ain) if s is not None]
        for frame in inp.decode(*streams):
            t = frame.time
            if t is None or t < start_s:
                continue
            if t >= end_s:
                if isinstance(frame, av.VideoFrame):
                    video_done = True
                else:
                    audio_done = True
                if video_done and (audio_done or ain is None):
                    break
                continue
            if isinstance(frame, av.VideoFrame):
                img = crop_window(frame.to_ndarray(format="rgb24"), crop_xywh, scale)
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(
                    np.uint8, copy=False
                )
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts = n
                vf.time_base = Fraction(1) / fps
                out.mux(vout.encode(vf))
                n += 1
            elif aout is not None and resampler is not None:
                for af in resampler.resample(frame):
                    af.pts = None
                    out.mux(aout.encode(af))
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))
    return n
