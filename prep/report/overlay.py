"""Drawing helpers for QA overlays: landmarks, irises, boxes, mattes, label maps, contact sheets.

All functions take and return RGB uint8 images (H, W, 3) and never modify their input. Points use
the OpenCV pixel convention (pixel centres at integer coordinates); they are drawn with 1/16-pixel
precision. `write_overlays` renders one image per frame, streams them into an mp4 and keeps a
contact sheet of evenly spaced frames, so a long video never sits in memory.

Public API: `draw_points`, `draw_landmarks68`, `draw_irises`, `draw_box`, `tint_matte`,
`colorize_labels`, `blend_labels`, `contact_sheet`, `sample_indices`, `write_overlays`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from prep.io.files import write_image
from prep.progress import progress

log = logging.getLogger(__name__)

_SHIFT = 4  # subpixel bits for cv2 drawing
GREEN, RED, CYAN, YELLOW, MAGENTA = (
    (0, 230, 0),
    (255, 40, 40),
    (0, 220, 255),
    (255, 220, 0),
    (255, 0, 255),
)

# BiSeNet 19-class palette (0 background is black).
LABEL_COLORS = np.array(
    [
        (0, 0, 0),
        (204, 160, 130),
        (120, 60, 20),
        (150, 80, 30),
        (40, 120, 255),
        (0, 80, 220),
        (255, 255, 0),
        (220, 120, 160),
        (200, 100, 140),
        (255, 0, 255),
        (255, 140, 60),
        (120, 0, 0),
        (255, 40, 90),
        (200, 0, 60),
        (170, 210, 120),
        (0, 255, 200),
        (80, 200, 255),
        (60, 30, 10),
        (255, 255, 180),
    ],
    np.uint8,
)


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * (1 << _SHIFT)).astype(np.int32)


def draw_points(
    img: np.ndarray, pts_px: np.ndarray, color=GREEN, radius: float = 2.0
) -> np.ndarray:
    """Filled dots at (K, 2) points; NaN points are skipped."""
    out = img.copy()
    r = int(round(radius * (1 << _SHIFT)))
    for x, y in _fixed(pts_px[np.isfinite(pts_px).all(axis=-1)]):
        cv2.circle(out, (int(x), int(y)), r, color, -1, cv2.LINE_AA, _SHIFT)
    return out


def draw_landmarks68(
    img: np.ndarray, pts_px: np.ndarray, color=GREEN, radius: float = 1.5
) -> np.ndarray:
    """iBUG 68 points (68, 2) with the jaw, brow, nose, eye and lip outlines."""
    from prep.vision.landmarks.mapping import POLYLINES_68

    if not np.isfinite(pts_px).all():
        return img.copy()
    out = img.copy()
    fx = _fixed(pts_px)
    for idx, closed in POLYLINES_68:
        cv2.polylines(out, [fx[idx]], closed, color, 1, cv2.LINE_AA, _SHIFT)
    return draw_points(out, pts_px, color, radius)


def draw_irises(
    img: np.ndarray, iris_px: np.ndarray, valid: np.ndarray, radius: float = 3.0
) -> np.ndarray:
    """Two iris centres (2, 2): valid ones as cyan crosses, invalid ones as red rings."""
    out = img.copy()
    for (x, y), ok in zip(iris_px, valid, strict=True):
        if not np.isfinite([x, y]).all():
            continue
        c = _fixed(np.array([x, y]))
        r = int(round(radius * (1 << _SHIFT)))
        if ok:
            d = r * 2
            cv2.line(out, (c[0] - d, c[1]), (c[0] + d, c[1]), CYAN, 1, cv2.LINE_AA, _SHIFT)
            cv2.line(out, (c[0], c[1] - d), (c[0], c[1] + d), CYAN, 1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.circle(out, (int(c[0]), int(c[1])), r, RED, 1, cv2.LINE_AA, _SHIFT)
    return out


def draw_box(img: np.ndarray, box_xyxy: np.ndarray, color=YELLOW, thickness: int = 2) -> np.ndarray:
    """Axis-aligned box given by its edges (x0, y0, x1, y1) in pixels; NaN boxes are skipped."""
    out = img.copy()
    if np.isfinite(box_xyxy).all():
        b = _fixed(box_xyxy)
        cv2.rectangle(
            out,
            (int(b[0]), int(b[1])),
            (int(b[2]), int(b[3])),
            color,
            thickness,
            cv2.LINE_AA,
            _SHIFT,
        )
    return out


def tint_matte(
    img: np.ndarray, alpha: np.ndarray, color=MAGENTA, strength: float = 0.45
) -> np.ndarray:
    """Tint the background (1 - alpha) with `color`; alpha (H, W) uint8 0..255 or float 0..1."""
    a = alpha.astype(np.float32) * (1.0 / 255.0 if alpha.dtype == np.uint8 else 1.0)
    w = strength * (1.0 - a)
    solid = np.empty_like(img)
    solid[:] = np.asarray(color, np.uint8)
    return cv2.blendLinear(img, solid, 1.0 - w, w)


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) BiSeNet label map -> (H, W, 3) RGB colours."""
    return LABEL_COLORS[np.clip(labels, 0, len(LABEL_COLORS) - 1)]


def blend_labels(img: np.ndarray, labels: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """Label colours over the image (background pixels left untouched)."""
    mixed = cv2.addWeighted(img, 1.0 - strength, colorize_labels(labels), strength, 0.0)
    return np.where(labels[..., None] > 0, mixed, img)


def sample_indices(n: int, k: int) -> np.ndarray:
    """`k` evenly spaced indices in ``range(n)`` including both ends (fewer when n < k)."""
    if n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, min(k, n))).astype(np.int64))


def contact_sheet(
    images: list[np.ndarray], captions: list[str] | None = None, cols: int = 4, tile_px: int = 256
) -> np.ndarray:
    """Tile images (each resized to `tile_px` wide, aspect kept) into one RGB sheet."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h0, w0 = images[0].shape[:2]
    th = int(round(tile_px * h0 / w0))
    rows = (len(images) + cols - 1) // cols
    sheet = np.zeros((rows * th, cols * tile_px, 3), np.uint8)
    for k, im in enumerate(images):
        tile = cv2.resize(im, (tile_px, th), interpolation=cv2.INTER_AREA)
        if captions:
            cv2.putText(
                tile,
                captions[k],
                (4, 16),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
        r, c = divmod(k, cols)
        sheet[r * th : (r + 1) * th, c * tile_px : (c + 1) * tile_px] = tile
    return sheet


def write_overlays(
    out_dir: Path,
    name: str,
    n_frames: int,
    render: Callable[[int], np.ndarray],
    fps: float,
    video: bool = True,
    n_sheet: int = 12,
) -> list[Path]:
    """Render every frame into ``<out_dir>/<name>.mp4`` and a ``<name>_sheet.png`` contact sheet.

    Args:
        out_dir: overlays folder of the stage.
        name: file stem.
        n_frames: frames to render, ``render(0) .. render(n_frames - 1)``.
        render: returns the overlay of frame i, RGB uint8 (H, W, 3).
        fps: frame rate of the mp4.
        video: also write the mp4 (else only the sheet, rendering just the sampled frames).
        n_sheet: frames on the contact sheet.

    Returns:
        Paths written.
    """
    from prep.io.video_writer import write_video

    out_dir.mkdir(parents=True, exist_ok=True)
    picks = set(sample_indices(n_frames, n_sheet).tolist())
    tiles: list[np.ndarray] = []
    caps: list[str] = []

    def frames():
        for i in progress(range(n_frames), total=n_frames, desc=f"overlay {name}"):
            if not video and i not in picks:
                continue
            img = render(i)
            if i in picks:
                tiles.append(cv2.resize(img, (256, int(round(256 * img.shape[0] / img.shape[1])))))
                caps.append(f"{i:06d}")
            yield img

    written = []
    if video:
        path = out_dir / f"{name}.mp4"
        write_video(path, frames(), fps)
        written.append(path)
    else:
        for _ in frames():
            pass
    if tiles:
        sheet_path = out_dir / f"{name}_sheet.png"
        write_image(sheet_path, contact_sheet(tiles, caps))
        written.append(sheet_path)
    return written
