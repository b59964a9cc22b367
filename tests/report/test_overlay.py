"""Overlay drawing helpers: inputs untouched, marks where the points are, sheets and videos."""

from __future__ import annotations

import numpy as np

from prep.io.files import read_image
from prep.report import overlay


def _img(h=64, w=80):
    return np.full((h, w, 3), 50, np.uint8)


def test_draw_functions_mark_the_right_pixels_and_leave_input_alone():
    img = _img()
    pts = np.full((68, 2), np.nan)
    pts[:, 0] = np.linspace(10, 70, 68)
    pts[:, 1] = 30
    out = overlay.draw_landmarks68(img, pts)
    assert (img == 50).all()  # input untouched
    assert (out[30, 40] != 50).any() and (out[5, 5] == 50).all()
    irises = overlay.draw_irises(
        img, np.array([[20.0, 20.0], [60.0, 20.0]]), np.array([True, False])
    )
    assert np.abs(irises[20, 20].astype(int) - overlay.CYAN).max() < 10  # antialiased cross
    assert (irises[20, 60] == 50).all() and (irises[20, 57] != 50).any()  # ring, not a cross
    boxed = overlay.draw_box(img, np.array([10.0, 10.0, 50.0, 40.0]), thickness=1)
    assert (boxed[10, 30] != 50).any() and (boxed[25, 30] == 50).all()
    assert (overlay.draw_box(img, np.full(4, np.nan)) == img).all()


def test_matte_tint_and_label_blend():
    img = _img()
    alpha = np.zeros((64, 80), np.uint8)
    alpha[:, 40:] = 255
    tinted = overlay.tint_matte(img, alpha)
    assert (tinted[:, 40:] == 50).all() and (tinted[:, :40] != 50).any()
    labels = np.zeros((64, 80), np.uint8)
    labels[:32] = 16
    blended = overlay.blend_labels(img, labels)
    assert (blended[40:] == 50).all() and (blended[:32] != 50).any()
    assert overlay.colorize_labels(labels).shape == (64, 80, 3)


def test_sample_indices_and_contact_sheet():
    assert overlay.sample_indices(400, 12).tolist()[:2] == [0, 36]
    assert overlay.sample_indices(400, 12)[-1] == 399
    assert overlay.sample_indices(3, 12).tolist() == [0, 1, 2]
    sheet = overlay.contact_sheet([_img()] * 5, ["a"] * 5, cols=4, tile_px=40)
    assert sheet.shape == (2 * 32, 4 * 40, 3)


def test_write_overlays_streams_video_and_sheet(tmp_path):
    seen = []

    def render(i):
        seen.append(i)
        return np.full((48, 64, 3), i * 10, np.uint8)

    paths = overlay.write_overlays(tmp_path, "demo", 10, render, fps=5.0, n_sheet=4)
    assert [p.name for p in paths] == ["demo.mp4", "demo_sheet.png"]
    assert seen == list(range(10)) and paths[0].stat().st_size > 0
    assert read_image(paths[1], "rgb").shape[1] == 4 * 256
    seen.clear()
    overlay.write_overlays(tmp_path, "still", 10, render, fps=5.0, video=False, n_sheet=3)
    assert seen == overlay.sample_indices(10, 3).tolist()  # only the sampled frames rendered
