"""Face parsing from the MediaPipe mesh and the person matte (backend ``parsing=mesh``).

Face regions are polygons of mesh vertices (outlines in `prep.vision.landmarks.mapping`), filled
back to front: skin (face oval), nose (convex hull), brows, eyes (irises included: the BiSeNet
classes have no iris label), upper and lower lips, mouth interior. Outside the face, foreground
pixels (matte >= threshold) are split with head-aligned coordinates (``down`` = forehead 10 ->
chin 152 direction, origin at the chin; face height H = |forehead - chin|, which unlike the width
does not shrink when the head turns):

- neck: below the jaw angle (vertices 172/397), within ``neck_half_width * H`` of the chin's
  vertical, down to ``neck_length * H`` below the chin, and skin-coloured (robust chroma and luma
  statistics of the face's skin pixels), then closed morphologically (shadow under the chin);
  the colour test is what stops the neck at a collar;
- cloth: every other foreground pixel below the chin, in head or image coordinates, or beside
  the head (> 0.75 H from the chin's vertical) below the jaw angle (shoulders, collar, shirt).
  Limitation: long hair hanging below the chin is labelled cloth too (use ``parsing=bisenet``
  for such subjects);
- hair: the remaining foreground above the chin (hair, ears, hats are not told apart);
- hairline: above the brows the oval and the hairline disagree both ways, so non-skin pixels
  inside the oval become hair and skin-coloured foreground above it (a high forehead) skin.

Pixel convention: OpenCV, pixel centres at integer coordinates; all inputs in crop pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from prep.io.files import image_hw
from prep.vision.landmarks import mapping as mp_idx
from prep.vision.parsing import LABEL

_SHIFT = 4
_REGIONS = [  # (label, polygon vertex ids), drawn in this order
    ("l_brow", mp_idx.closed_loop(mp_idx.RIGHT_BROW_UPPER, mp_idx.RIGHT_BROW_LOWER)),
    ("r_brow", mp_idx.closed_loop(mp_idx.LEFT_BROW_UPPER, mp_idx.LEFT_BROW_LOWER)),
    ("l_eye", mp_idx.closed_loop(mp_idx.RIGHT_EYE_UPPER, mp_idx.RIGHT_EYE_LOWER)),
    ("r_eye", mp_idx.closed_loop(mp_idx.LEFT_EYE_UPPER, mp_idx.LEFT_EYE_LOWER)),
    ("u_lip", mp_idx.closed_loop(mp_idx.LIPS_OUTER_UPPER, mp_idx.LIPS_INNER_UPPER)),
    ("l_lip", mp_idx.closed_loop(mp_idx.LIPS_OUTER_LOWER, mp_idx.LIPS_INNER_LOWER)),
    ("mouth", mp_idx.closed_loop(mp_idx.LIPS_INNER_UPPER, mp_idx.LIPS_INNER_LOWER)),
]


def _fill(canvas: np.ndarray, pts_px: np.ndarray, value: int) -> None:
    poly = np.round(pts_px * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [poly], (int(value),), cv2.LINE_8, _SHIFT)


def face_regions(dense_px: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 labels of the face interior (0 outside the face oval)."""
    xy = dense_px[:, :2].astype(np.float64)
    lab = np.zeros(hw, np.uint8)
    _fill(lab, xy[mp_idx.FACE_OVAL], LABEL["skin"])
    hull = cv2.convexHull(xy[mp_idx.NOSE_HULL].astype(np.float32))[:, 0]
    _fill(lab, hull, LABEL["nose"])
    for name, idx in _REGIONS:
        _fill(lab, xy[idx], LABEL[name])
    return lab


class _SkinModel:
    """Colour model of the face's skin pixels, tested only where asked.

    Robust statistics (median, MAD) of the skin pixels, so hair or shadow inside the face oval do
    not widen the model: Cr and Cb within 3 robust sigmas (at least 6 levels), and luma above
    `min_luma` times the skin's (dark clothes have neutral chroma but low luma).
    """

    def __init__(self, ycrcb: np.ndarray, skin: np.ndarray):
        self.ycrcb = ycrcb
        samples = ycrcb[skin][::4].astype(np.float32)  # every 4th pixel is plenty for a median
        self.ok = len(samples) >= 50
        if self.ok:
            self.med = np.median(samples, axis=0)
            self.tol = np.maximum(3.0 * np.median(np.abs(samples - self.med), axis=0) * 1.4826, 6.0)

    def like(self, where: np.ndarray, min_luma: float = 0.4) -> np.ndarray:
        """(H, W) bool: pixels of `where` coloured like skin (all of `where` without a model)."""
        out = where.copy()
        if not self.ok:
            return out
        px = self.ycrcb[where].astype(np.float32)
        d = np.abs(px - self.med)
        out[where] = (
            (d[:, 1] < self.tol[1]) & (d[:, 2] < self.tol[2]) & (px[:, 0] > min_luma * self.med[0])
        )
        return out


def _smooth_neck(neck: np.ndarray, band: np.ndarray, face_h: float) -> np.ndarray:
    """Close the skin-coloured neck mask (shadows under the chin, specular spots) within its band.

    A morphological closing with a disk of 0.08 face heights fills small holes and gaps; the
    result never leaves the candidate band.
    """
    k = max(3, int(round(0.08 * face_h)) | 1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    # pad with zeros: cv2's erosion treats outside-the-image as set, which would let the closing
    # grow the neck along the image border
    padded = cv2.copyMakeBorder(neck.astype(np.uint8), k, k, k, k, cv2.BORDER_CONSTANT, value=(0,))
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disk)[k:-k, k:-k] > 0
    return closed & band


def mesh_parsing(
    dense_px: np.ndarray | None,
    alpha: np.ndarray,
    rgb: np.ndarray,
    alpha_threshold: float = 0.5,
    neck_length: float = 0.55,
    neck_half_width: float = 1.2,
) -> np.ndarray:
    """Label map of one frame.

    Args:
        dense_px: (478, 3) MediaPipe points in the frame's pixels, or None when no face was found
            (then the whole foreground is labelled hair; nothing is guessed for the face).
        alpha: (H, W) uint8 matte.
        rgb: (H, W, 3) uint8 frame (for the neck's skin colour test).
        alpha_threshold: matte fraction above which a pixel is foreground.
        neck_length: neck end below the chin, in face heights.
        neck_half_width: neck half width, in face heights.

    Returns:
        (H, W) uint8 labels (BiSeNet classes).
    """
    hw = image_hw(alpha)
    fg = alpha >= alpha_threshold * 255.0
    labels = np.where(fg, LABEL["hair"], LABEL["background"]).astype(np.uint8)
    if dense_px is None or not np.isfinite(dense_px).all():
        return labels
    xy = dense_px[:, :2].astype(np.float64)
    face = face_regions(dense_px, hw)
    chin, top = xy[152], xy[10]
    down = (chin - top) / max(np.linalg.norm(chin - top), 1e-6)
    across = np.array([-down[1], down[0]])
    face_h = np.linalg.norm(chin - top)
    rel_y = np.arange(hw[0], dtype=np.float32)[:, None] - np.float32(chin[1])
    rel_x = np.arange(hw[1], dtype=np.float32)[None, :] - np.float32(chin[0])
    v = rel_x * down[0] + rel_y * down[1]
    u = rel_x * across[0] + rel_y * across[1]
    v_jaw = float(np.dot(0.5 * (xy[172] + xy[397]) - chin, down))
    outside = fg & (face == 0)
    band = (
        outside
        & (v > v_jaw)
        & (v <= neck_length * face_h)
        & (np.abs(u) <= neck_half_width * face_h)
    )
    is_skin = face == LABEL["skin"]
    model = _SkinModel(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb), is_skin)
    neck = _smooth_neck(model.like(band), band, float(face_h))
    # Above the brows the oval and the hairline disagree both ways: non-skin pixels inside the
    # oval are hair, skin-coloured foreground above it (a high forehead) is skin.
    v_brow = float(np.dot(0.5 * (xy[105] + xy[334]) - chin, down))
    forehead = is_skin & (v < v_brow)
    face[forehead & ~model.like(forehead, min_luma=0.65)] = 0
    u_oval = (xy[mp_idx.FACE_OVAL] - chin) @ across
    above = outside & (v < v_brow) & (u >= u_oval.min()) & (u <= u_oval.max())
    face[model.like(above, min_luma=0.65)] = LABEL["skin"]
    # below the chin in head or image coordinates (a bowed head puts the collar above its chin line)
    # and shoulders: beside the head (> 0.75 H from the chin's vertical) below the jaw angle
    below = (v > 0) | (rel_y > 0) | ((v > v_jaw) & (np.abs(u) > 0.75 * face_h))
    cloth = outside & ~neck & below
    labels[cloth] = LABEL["cloth"]
    labels[neck] = LABEL["neck"]
    inside = face > 0
    labels[inside] = face[inside]
    return labels
