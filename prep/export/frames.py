"""Per-frame images of an export, re-cropped to the camera the consumer needs.

`prep.export.cameras.resample_maps` gives, per frame, the affine ``D`` from crop pixels to
exported pixels (identity when the crop's own camera suits the consumer). `ExportFrames` applies
it to everything that is drawn in crop pixels: the colour (resampled from the ORIGINAL frame
through ``D @ orig_to_crop`` when crop/crop.npz and frames/ exist, so pixels that fall outside the
first crop show the real scene, not padding), the matte and mask (bilinear, 0 outside the crop:
unknown there is background) and the parsing labels (nearest). Pixel convention: OpenCV,
integer pixel centres (cv2.warpAffine's, see `prep.geometry.crop`).
"""

from __future__ import annotations

import cv2
import numpy as np

from prep.export.common import load_mask, load_rgba
from prep.geometry.crop import CropTransforms, warp_to_crop
from prep.io.files import read_image
from prep.subject import SubjectDir


def is_identity(D: np.ndarray) -> bool:
    return bool(np.allclose(D, np.eye(3), atol=1e-9))


def warp(img: np.ndarray, D: np.ndarray, image_size, nearest: bool = False) -> np.ndarray:
    """Resample a crop-space image (H,W[,C]) into exported pixels; 0 outside the source."""
    h, w = (int(v) for v in image_size)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(
        img, np.asarray(D, np.float64)[:2], (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT
    )


class ExportFrames:
    """Images of one subject in the exported pixels of each frame.

    Args:
        subject: the subject folder.
        D: (T,3,3) crop pixels -> exported pixels, per tracked frame (row i = frame i).
        image_size: (h, w) of the exported images (the crop's).
    """

    def __init__(self, subject: SubjectDir, D: np.ndarray, image_size):
        self.subject = subject
        self.D = np.asarray(D, np.float64)
        self.image_size = tuple(int(v) for v in image_size)
        self.identity = all(is_identity(d) for d in self.D)
        self._orig_to_crop = None
        if not self.identity and subject.crop_npz.exists() and subject.frames_dir.is_dir():
            self._orig_to_crop = CropTransforms.load(subject).orig_to_crop  # frames/ -> crop

    def rgba(self, i: int) -> np.ndarray:
        """(H,W,4) uint8: colour and matte of frame i in exported pixels."""
        rgba = load_rgba(self.subject, i)
        D = self.D[i]
        if is_identity(D):
            return rgba
        alpha = warp(rgba[..., 3], D, self.image_size)
        rgb = None
        if self._orig_to_crop is not None and self.subject.frame_path(i).exists():
            h, w = self.image_size
            frame = read_image(self.subject.frame_path(i))
            M = D @ self._orig_to_crop[i]
            if h == w:
                rgb = warp_to_crop(frame, M, h)
            else:
                rgb = cv2.warpAffine(frame, M[:2], (w, h), borderMode=cv2.BORDER_REPLICATE)
        if rgb is None:
            rgb = warp(rgba[..., :3], D, self.image_size)
        return np.concatenate([rgb, alpha[..., None]], axis=2)

    def mask(self, i: int, rgba: np.ndarray | None = None) -> np.ndarray:
        """(H,W) uint8 mask of frame i (mask/ or the matte) in exported pixels."""
        mask = load_mask(self.subject, i)
        if mask is None:
            return (rgba if rgba is not None else self.rgba(i))[..., 3]
        return mask if is_identity(self.D[i]) else warp(mask, self.D[i], self.image_size)

    def labels(self, i: int) -> np.ndarray | None:
        """(H,W) uint8 parsing labels of frame i in exported pixels, or None without parsing."""
        path = self.subject.parsing_path(i)
        if not path.exists():
            return None
        labels = read_image(path, "gray")
        if is_identity(self.D[i]):
            return labels
        return warp(labels, self.D[i], self.image_size, nearest=True)

    def points(self, i: int, px: np.ndarray) -> np.ndarray:
        """(N,2) crop-pixel points of frame i -> exported pixels."""
        D = self.D[i]
        return np.asarray(px, np.float64) @ D[:2, :2].T + D[:2, 2]
