"""AD-NeRF's background, head and composite images, from our parsing labels.

AD-NeRF's ``data_util/process_data.py`` colours its BiSeNet parsing as head (labels 1-13 and
17+: face, brows, eyes, glasses, ears, earring, nose, mouth, lips, hair, hat), neck (14, 15),
torso (16, cloth) and background (0) (``data_util/face_parsing/test.py``), then:

- step 4, ``bc.jpg``: over every 20th frame, each pixel takes its colour from the frame where it
  lies farthest from any foreground pixel; pixels never more than 5 px from the foreground take
  the colour of the nearest pixel that was;
- step 5, ``com_imgs/<i>.jpg``: the frame with its background replaced by ``bc.jpg`` (TorsoNeRF's
  input), ``head_imgs/<i>.jpg``: the frame with everything but the head replaced (HeadNeRF's).

We follow those steps on our parsing labels (BiSeNet convention), streaming the frames.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

HEAD_LABELS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18)
BG_SAMPLE_STEP = 20  # process_data.py step 4: np.arange(0, n, 20)
BG_MIN_DIST_PX = 5.0  # process_data.py step 4: max_dist > 5


def estimate_background(
    ids: list[int],
    read_rgb: Callable[[int], np.ndarray],
    read_labels: Callable[[int], np.ndarray],
) -> np.ndarray:
    """AD-NeRF's bc.jpg from every 20th frame of `ids`.

    Args:
        ids: frame indices (the sampled ones are ``ids[::20]``).
        read_rgb: frame index -> (H,W,3) uint8.
        read_labels: frame index -> (H,W) BiSeNet labels (0 = background).

    Returns:
        (H,W,3) uint8 background image.
    """

    def bg_distance(i: int) -> np.ndarray:
        bg = (read_labels(i) == 0).astype(np.uint8)
        return cv2.distanceTransform(bg, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    sampled = ids[::BG_SAMPLE_STEP]
    best_dist, best = bg_distance(sampled[0]), read_rgb(sampled[0]).copy()
    for i in sampled[1:]:
        dist, rgb = bg_distance(i), read_rgb(i)
        better = dist > best_dist
        best_dist = np.where(better, dist, best_dist)
        best[better] = rgb[better]
    known = best_dist > BG_MIN_DIST_PX
    if not known.any():
        return best  # the subject never leaves any pixel: nothing better to offer
    _, (iy, ix) = distance_transform_edt(~known, return_indices=True)
    return best[iy, ix]


def head_and_composite(
    rgb: np.ndarray, labels: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(head_img, com_img) of one frame, as process_data.py step 5 builds them."""
    bg = labels == 0
    head = np.isin(labels, HEAD_LABELS)
    com = np.where(bg[..., None], background, rgb)
    head_img = np.where(head[..., None], rgb, background)
    return head_img.astype(np.uint8), com.astype(np.uint8)


def face_rect(lmk68_px: np.ndarray, image_hw) -> list[int]:
    """AD-NeRF's per-frame ``face_rect`` [x, y, w, h] from 68 landmarks (process_data.py step 7:
    centre between the extreme x, top at point 27, 1.5x the half width, 1.15x the height)."""
    h, w = (int(v) for v in image_hw)
    lms = np.asarray(lmk68_px, np.float64)
    min_x, max_x = lms[:, 0].min(), lms[:, 0].max()
    cx = int((min_x + max_x) / 2.0)
    cy = int(lms[27, 1])
    h_w = int((max_x - cx) * 1.5)
    h_h = int((lms[8, 1] - cy) * 1.15)
    rect_x, rect_y = max(cx - h_w, 0), max(cy - h_h, 0)
    return [rect_x, rect_y, min(w - 1 - rect_x, 2 * h_w), min(h - 1 - rect_y, 2 * h_h)]
