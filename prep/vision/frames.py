"""Reading frames at reduced size: JPEG DCT scaling decodes 1/2, 1/4 or 1/8 of a frame several
times faster than a full decode followed by a resize.

Pixel convention (integer pixel centres): a frame decoded at 1/r size has pixel x_r covering
original pixels [r x_r, r x_r + r), so x = r (x_r + 0.5) - 0.5.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from prep.io.files import read_image
from prep.models.camera import resize_affine

_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def reduction(downscale: float, path: Path | str) -> int:
    """Largest r in (1, 2, 4, 8) with r <= `downscale` (how much smaller the frame will be made
    anyway); 1 for non-JPEG files."""
    if Path(path).suffix.lower() not in (".jpg", ".jpeg"):
        return 1
    r = 1
    while r < 8 and 2 * r <= downscale:
        r *= 2
    return r


def read_rgb(path: Path | str, r: int = 1) -> np.ndarray:
    """RGB uint8 frame decoded at 1/r size (r = 1, 2, 4 or 8; r > 1 only for JPEG).

    Raises:
        FileNotFoundError: the file is missing or not an image.
    """
    if r == 1:
        return read_image(path, "rgb")
    bgr = cv2.imread(str(path), _FLAGS[r])
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def reduced_to_orig(r: int) -> np.ndarray:
    """(3, 3) map from pixels of a 1/r-size decode to original pixels."""
    return resize_affine(r, r)
