"""Audio extraction: 16-bit PCM wav on the video's time axis, resampling, trimming."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from prep.io.audio import extract_audio
from prep.io.synthetic import make_clip


@pytest.fixture(scope="module")
def tone_clip(tmp_path_factory):
    # 50 frames at 25 fps = 2.0 s, with a 440 Hz tone at 44.1 kHz.
    path = tmp_path_factory.mktemp("a") / "tone.mp4"
    return make_clip(path, n_frames=50, size=(32, 32), audio_hz=440.0, audio_rate=44100)


def _read(path):
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        return pcm.reshape(-1, w.getnchannels()), w.getframerate()


def _peak_hz(pcm, rate):
    x = pcm[:, 0].astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spec)]


def test_native_rate_wav_keeps_the_tone(tone_clip, tmp_path):
    info = extract_audio(tone_clip, tmp_path / "a.wav")
    pcm, rate = _read(tmp_path / "a.wav")
    assert rate == 44100 and info.sample_rate == 44100 and info.channels == 1
    assert abs(len(pcm) / rate - 2.0) < 0.06
    assert abs(_peak_hz(pcm, rate) - 440.0) < 2.0
    assert np.abs(pcm).max() > 10000  # amplitude 0.5 of full scale survived


def test_resampled_and_trimmed_to_the_frame_range(tone_clip, tmp_path):
    info = extract_audio(tone_clip, tmp_path / "b.wav", sample_rate=16000, start_s=0.5, end_s=1.5)
    pcm, rate = _read(tmp_path / "b.wav")
    assert rate == 16000 and len(pcm) == 16000 and info.duration_s == pytest.approx(1.0)
    assert abs(_peak_hz(pcm, rate) - 440.0) < 2.0
    # Phase check: sample i is the tone at time 0.5 + i / rate (the wav shares the video clock).
    t = 0.5 + np.arange(len(pcm)) / rate
    ref = np.sin(2 * np.pi * 440.0 * t)
    corr = np.corrcoef(pcm[:, 0].astype(float), ref)[0, 1]
    assert corr > 0.9


def test_no_audio_stream_writes_nothing(tmp_path):
    clip = make_clip(tmp_path / "silent.mp4", n_frames=5, size=(32, 32))
    assert extract_audio(clip, tmp_path / "x.wav") is None
    assert not (tmp_path / "x.wav").exists()
