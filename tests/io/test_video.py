"""Video decode/encode: rotation, timestamp resampling, VFR, frame counts, bad inputs."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from prep.errors import BadInputError
from prep.io.files import TMP_PREFIX
from prep.io.synthetic import make_clip, pattern_frame, read_index, write_tone
from prep.io.video import count_frames, iter_frames, probe
from prep.io.video_writer import VideoWriter, write_video

VFR_TIMES = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54, 0.58, 0.62, 0.66, 0.9, 1.0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("v") / "clip.mp4", n_frames=30, size=(64, 48))


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "vfr.mkv"
    return make_clip(path, n_frames=len(VFR_TIMES), times_s=VFR_TIMES, fps=25)


def test_write_video_roundtrip_pads_odd_sizes(tmp_path):
    frames = [pattern_frame(i, 63, 47) for i in range(12)]
    n = write_video(tmp_path / "out.mp4", iter(frames), fps=12.5)
    assert n == 12
    with av.open(str(tmp_path / "out.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and (s.width, s.height) == (64, 48)
        assert s.codec_context.pix_fmt == "yuv420p" and float(s.average_rate) == 12.5
    assert [read_index(f.rgb) for f in iter_frames(tmp_path / "out.mp4")] == list(range(12))
    assert not list(tmp_path.glob(TMP_PREFIX + "*"))


def test_writer_leaves_nothing_when_the_producer_fails(tmp_path):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "out.mp4", fps=25) as w:
        w.write(pattern_frame(0, 32, 32))
        raise RuntimeError("producer died")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_size_change_and_bad_fps(tmp_path):
    with pytest.raises(ValueError, match="differs"), VideoWriter(tmp_path / "a.mp4", 25) as w:
        w.write(pattern_frame(0, 32, 32))
        w.write(pattern_frame(1, 34, 32))
    with pytest.raises(BadInputError, match="positive"):
        VideoWriter(tmp_path / "b.mp4", fps=-5)


def test_probe_and_count_by_decoding(clip):
    info = probe(clip)
    assert (info.width, info.height, info.rotation_deg) == (64, 48, 0)
    assert info.fps == 25.0 and info.audio is None
    assert count_frames(clip) == 30


@pytest.mark.parametrize("rotation", [90, 180, 270, -90])
def test_rotation_from_display_matrix(tmp_path, rotation):
    path = make_clip(tmp_path / "rot.mp4", n_frames=3, size=(64, 48), rotation_deg=rotation)
    info = probe(path)
    k = (rotation // 90) % 4
    assert info.rotation_deg == k * 90
    assert (info.width, info.height) == ((48, 64) if k % 2 else (64, 48))
    rgb = next(iter_frames(path)).rgb
    expected = np.rot90(pattern_frame(0, 64, 48), k)
    assert rgb.shape == expected.shape
    assert np.abs(rgb.astype(int) - expected).mean() < 4  # H.264 noise only
    # The red marker (bottom-left when upright) moved where a player shows it.
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    ys, xs = np.nonzero(red)
    corner = (ys.mean() > rgb.shape[0] / 2, xs.mean() > rgb.shape[1] / 2)
    assert corner == {0: (True, False), 1: (True, True), 2: (False, True), 3: (False, False)}[k]


def test_rotation_from_legacy_rotate_tag(tmp_path):
    # Old phone files carry `rotate=90` (clockwise) as a tag instead of a display matrix.
    path = tmp_path / "tag.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.metadata["rotate"] = "90"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, 64, 48), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    assert probe(path).rotation_deg == 270  # 90 clockwise = 270 counter-clockwise
    rgb = next(iter_frames(path)).rgb
    assert np.abs(rgb.astype(int) - np.rot90(pattern_frame(0, 64, 48), -1)).mean() < 4


def test_native_keeps_variable_frame_rate_timestamps(vfr_clip):
    frames = list(iter_frames(vfr_clip))
    assert [f.index for f in frames] == list(range(len(VFR_TIMES)))
    assert np.allclose([f.pts_s for f in frames], VFR_TIMES, atol=1e-3)
    assert [read_index(f.rgb) for f in frames] == list(range(len(VFR_TIMES)))


def _nearest_reference(times, fps, lo=0.0, hi=None):
    """Slow reference: for each target time, the source frame nearest to it (ties: later)."""
    times = np.asarray(times)
    end = times[-1] + (times[-1] - times[-2])
    hi = end if hi is None else min(hi, end)
    out, k = [], 0
    while lo + k / fps < hi - 1e-7:
        t = lo + k / fps
        d = np.abs(times - t)
        out.append(int(np.flatnonzero(d <= d.min() + 1e-7)[-1]))
        k += 1
    return out


@pytest.mark.parametrize("fps", [5.0, 10.0, 12.5, 25.0, 30.0, 60.0])
def test_resampling_by_timestamps_matches_nearest_reference(vfr_clip, fps):
    frames = list(iter_frames(vfr_clip, fps=fps))
    assert [read_index(f.rgb) for f in frames] == _nearest_reference(VFR_TIMES, fps)
    assert np.allclose([f.pts_s for f in frames], np.arange(len(frames)) / fps)


def test_resampling_constant_rate(clip):
    assert [read_index(f.rgb) for f in iter_frames(clip, fps=25)] == list(range(30))
    assert [read_index(f.rgb) for f in iter_frames(clip, fps=12.5)] == list(range(0, 30, 2))
    up = [read_index(f.rgb) for f in iter_frames(clip, fps=50)]
    assert len(up) == 60 and up[::2] == list(range(30)) and up[1::2] == list(range(1, 30)) + [29]


def test_start_far_into_the_clip_seeks(tmp_path):
    path = make_clip(tmp_path / "long.mp4", n_frames=150, size=(64, 48))  # 6 s
    frames = list(iter_frames(path, start_s=3.0, end_s=4.0))
    assert [read_index(f.rgb) for f in frames] == list(range(75, 100))
    assert np.allclose([f.pts_s for f in frames], np.arange(75, 100) / 25)
    frames = list(iter_frames(path, fps=10, start_s=3.0, end_s=4.0))
    assert [read_index(f.rgb) for f in frames] == [75 + int(np.ceil(k * 2.5)) for k in range(10)]


def test_time_range_max_frames_and_skip(clip):
    frames = list(iter_frames(clip, start_s=0.4, end_s=0.8))
    assert [read_index(f.rgb) for f in frames] == list(range(10, 20))
    assert [f.index for f in frames] == list(range(10))
    assert len(list(iter_frames(clip, max_frames=7))) == 7
    skipped = list(iter_frames(clip, skip=lambda i: i % 2 == 0))
    assert all((f.rgb is None) == (f.index % 2 == 0) for f in skipped)
    assert np.allclose([f.pts_s for f in skipped], np.arange(30) / 25)


@pytest.mark.parametrize("fps", [0.0, -25.0])
def test_non_positive_fps_is_rejected(clip, fps):
    with pytest.raises(BadInputError, match="positive"):
        next(iter_frames(clip, fps=fps))


def test_missing_empty_folder_and_non_video(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        probe(tmp_path / "empty.mp4")
    with pytest.raises(BadInputError, match="folder"):
        list(iter_frames(tmp_path))
    (tmp_path / "notes.mp4").write_text("these are not frames\n" * 100)
    with pytest.raises(BadInputError, match="not a video"):
        next(iter_frames(tmp_path / "notes.mp4"))


def test_zero_frame_video_and_audio_only_file(tmp_path):
    # A video track that never got a frame (the recorder crashed before the first one).
    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        write_tone(out, a, 440.0, 16000, 0.5)
    with pytest.raises(BadInputError, match="no video stream|no .*frames"):
        list(iter_frames(path))
    audio_only = tmp_path / "voice.m4a"
    with av.open(str(audio_only), "w") as out:
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        write_tone(out, a, 440.0, 16000, 0.5)
    with pytest.raises(BadInputError, match="no video stream"):
        probe(audio_only)


def test_truncated_video_decodes_what_exists(tmp_path, caplog):
    full = make_clip(tmp_path / "full.mkv", n_frames=60, size=(64, 48), crf=30)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        frames = list(iter_frames(cut))
    assert 5 < len(frames) < 60
    assert [read_index(f.rgb) for f in frames] == list(range(len(frames)))
    assert 5 < count_frames(cut) < 60


def test_truncated_mp4_without_index_is_a_clear_error(tmp_path):
    full = make_clip(tmp_path / "full.mp4", n_frames=30, size=(64, 48))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:2000])  # the moov index sits at the end: lost
    with pytest.raises(BadInputError, match="not a video, or truncated|no .*frame"):
        next(iter_frames(cut))
