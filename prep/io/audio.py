"""Audio extraction with PyAV: the first audio stream of a media file to a 16-bit PCM wav.

The wav shares the video's time axis (time 0 = first video frame's timestamp, as in
`prep.io.video.iter_frames`), so audio sample ``i`` plays at ``start_s + i / rate``.
"""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import av
import numpy as np

from prep.io.files import atomic_path
from prep.io.video import _AV_ERRORS, AudioInfo, _check_file, _open, time_base

log = logging.getLogger(__name__)


def extract_audio(
    path: Path | str,
    wav_path: Path | str,
    sample_rate: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> AudioInfo | None:
    """Decode the first audio stream to a 16-bit PCM wav, aligned with the video's time axis.

    Time 0 is the start of the video stream (as for `iter_frames`): audio that starts later
    is padded with silence, audio before `start_s` or from `end_s` on is cut. Mono stays mono,
    anything with more channels is down-mixed to stereo.

    Args:
        path: media file.
        wav_path: output .wav (written atomically).
        sample_rate: output rate in Hz (e.g. 16000); None keeps the native rate.
        start_s: first time to keep (s), as passed to `iter_frames`.
        end_s: end time (s, exclusive); None = to the end of the audio.

    Returns:
        What was written, or None when the file has no audio stream (nothing is written).
    """
    p = _check_file(path)
    with _open(p) as container:
        if not container.streams.audio:
            return None
        a = container.streams.audio[0]
        vs = container.streams.video[0]
        v0 = float((vs.start_time or 0) * time_base(vs))
        rate = int(sample_rate or a.rate)
        channels = 1 if (a.channels or 1) == 1 else 2
        resampler = av.AudioResampler(
            format="s16", layout="mono" if channels == 1 else "stereo", rate=rate
        )
        lo = max(start_s or 0.0, 0.0)
        hi = end_s if end_s is not None else float("inf")
        with atomic_path(wav_path) as tmp, wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            n_written = _write_audio(container, a, resampler, wav, v0, lo, hi, rate)
    duration = n_written / rate
    log.info("audio: %d samples at %d Hz (%.2f s) -> %s", n_written, rate, duration, wav_path)
    return AudioInfo("pcm_s16le", rate, channels, duration)


def _write_audio(container, a, resampler, wav, v0: float, lo: float, hi: float, rate: int) -> int:
    """Resample every audio frame and write the samples inside [lo, hi) s; returns the count."""
    pos = None  # sample index (on the video time axis, at `rate`) of the next decoded sample
    written = 0  # samples written; the wav's sample i is at time lo + i / rate
    i_lo = int(round(lo * rate))
    i_hi = float("inf") if hi == float("inf") else int(round(hi * rate))

    def frames():
        try:
            for frame in container.decode(a):
                yield from resampler.resample(frame)
        except _AV_ERRORS as e:
            log.warning("audio decoding stopped early (truncated? %s)", e)
        yield from resampler.resample(None)

    for out in frames():
        if pos is None:
            t = float(out.pts * out.time_base) - v0 if out.pts is not None else 0.0
            pos = int(round(t * rate))
            if pos > i_lo:  # audio starts after the video: pad with silence
                pad = int(min(pos, i_hi)) - i_lo
                wav.writeframes(b"\0\0" * wav.getnchannels() * pad)
                written += pad
        pcm = out.to_ndarray().reshape(-1, wav.getnchannels())  # packed s16: (n, channels)
        a0, a1 = max(pos, i_lo + written), int(min(pos + len(pcm), i_hi))
        if a1 > a0:
            wav.writeframes(np.ascontiguousarray(pcm[a0 - pos : a1 - pos]).tobytes())
            written += a1 - a0
        pos += len(pcm)
        if pos >= i_hi:
            break
    return written
