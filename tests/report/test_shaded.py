"""Shaded overlays: panels line up with the tracked mesh, invalid frames are marked, logged."""

from __future__ import annotations

import numpy as np

from prep.io.files import read_image, save_npz, write_image
from prep.io.video import count_frames
from prep.logger import ExperimentLogger
from prep.models.flame_tracking import Tracking
from prep.report.shaded import render_tracked, write_shaded_overlays
from prep.subject import SubjectDir
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401
from tests.render.tracked import tiny_tracking

T, H, W = 5, 64, 64


class _Recorder(ExperimentLogger):
    def __init__(self):
        self.videos, self.images = [], []

    def log_video(self, key, path):
        self.videos.append((key, path))

    def log_image(self, key, image_rgb):
        self.images.append((key, image_rgb.shape))


def test_shaded_overlay_video_and_sheet(tmp_path, tiny_flame_assets):  # noqa: F811
    model, trk = tiny_tracking(tiny_flame_assets, T, H, W)
    trk["valid"][3] = False
    s = SubjectDir(tmp_path / "s")
    save_npz(s.flame_tracking, **trk)
    for i in range(T):
        write_image(s.crop_frame_path(i), np.full((H, W, 3), 90, np.uint8))
    rec = _Recorder()
    written = write_shaded_overlays(s, model, s.crop_frame_path, fps=25.0, logger=rec)
    mp4 = s.overlay_dir("shaded") / "shaded.mp4"
    sheet = s.overlay_dir("shaded") / "shaded_sheet.png"
    assert set(written) == {mp4, sheet}
    assert count_frames(mp4) == T
    assert read_image(sheet).shape[1] > 0
    assert [k for k, _ in rec.videos] == ["overlay/shaded"] and rec.images
    # The clay panel covers the head where the renderer says so, and only there.
    renders, masks = render_tracked(model, Tracking.from_arrays(trk), [0], (H, W))
    assert 0.1 < masks[0].mean() < 0.8
    assert (renders[0][~masks[0]] == 0).all() and (renders[0][masks[0]].mean() > 60)


def test_panels_mark_invalid_frames(tmp_path, tiny_flame_assets):  # noqa: F811
    from prep.report.shaded import _BatchedPanels

    model, trk = tiny_tracking(tiny_flame_assets, T, H, W)
    trk["valid"][1] = False
    s = SubjectDir(tmp_path / "s")
    for i in range(T):
        write_image(s.crop_frame_path(i), np.full((H, W, 3), 90, np.uint8))
    panels = _BatchedPanels(model, Tracking.from_arrays(trk), s.crop_frame_path, 2, 0.5)
    good, bad = panels(0), panels(1)
    assert good.shape == bad.shape == (H, 3 * W, 3)
    assert bad[:, W : 2 * W].max() == 0  # no mesh on an invalid frame
    assert tuple(bad[0, 0]) == (255, 40, 40)  # red border
    blend = good[:, 2 * W :]
    assert (blend != 90).any() and (good[:, W : 2 * W] > 0).any()


def test_sampled_frames_and_float64_model(tmp_path, tiny_flame_assets):  # noqa: F811
    model, trk = tiny_tracking(tiny_flame_assets, 9, H, W)
    model = model.double()
    s = SubjectDir(tmp_path / "s")
    save_npz(s.flame_tracking, **trk)
    for i in range(9):
        write_image(s.crop_frame_path(i), np.full((H, W, 3), 90, np.uint8))
    write_shaded_overlays(s, model, s.crop_frame_path, fps=25.0, max_frames=3)
    assert count_frames(s.overlay_dir("shaded") / "shaded.mp4") == 3
