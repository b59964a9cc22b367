"""Where the crop boxes go: square boxes from a detection track (static or smooth), one per image
for a photo collection, moved inside the frame on request; and the crop's statistics.

The boxes and the transforms they give follow the pixel convention of `prep.geometry.crop`.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from prep.config.perception import CropConfig
from prep.errors import BadConfigError, NoUsableFramesError
from prep.geometry.crop import CropTransforms, box_to_orig_to_crop, invert_affine


def _fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linearly interpolate (T, D) rows where `valid` is False (held at the ends)."""
    idx = np.flatnonzero(valid)
    t = np.arange(len(x))
    return np.stack([np.interp(t, idx, x[idx, k]) for k in range(x.shape[1])], axis=1)


def check_crop_config(cfg: CropConfig) -> None:
    """Raise BadConfigError for crop settings no crop can be made with."""
    if not cfg.image_size > 0 or not cfg.scale > 0 or not cfg.increase_area > -1:
        raise BadConfigError(
            f"crop.image_size={cfg.image_size}, crop.scale={cfg.scale} and "
            f"crop.increase_area={cfg.increase_area} must give a positive crop size"
        )
    if not 0 <= cfg.static_size_quantile <= 1:
        raise BadConfigError(f"crop.static_size_quantile={cfg.static_size_quantile}: use 0..1")
    if not 0 <= cfg.pad_value <= 255:
        raise BadConfigError(f"crop.pad_value={cfg.pad_value}: use a grey level 0..255")


def crop_boxes(
    face_box: np.ndarray,
    valid: np.ndarray,
    cfg: CropConfig,
    orig_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Square crop boxes from a face track, or from the faces of unrelated photos.

    Args:
        face_box: (T, 4) detected face boxes, original pixels (nan where invalid).
        valid: (T,) frames with a usable face box.
        cfg: crop settings (mode, scale, increase_area, shift_y, smoothing).
        orig_hw: (h, w) of the frames when they are a photo collection: each image is cropped
            around its own face (crop.mode does not apply), an image without one whole.

    Returns:
        (T, 4) float64 square boxes; invalid frames get interpolated (or held) boxes.

    Raises:
        NoUsableFramesError: no frame has a face.
        BadConfigError: a setting is out of range.
    """
    check_crop_config(cfg)
    if not valid.any():
        raise NoUsableFramesError("no frame has a detected face, so there is nothing to crop")
    box = _fill_invalid(np.asarray(face_box, np.float64), valid)
    side = np.sqrt((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))
    centre = (box[:, :2] + box[:, 2:]) / 2
    centre[:, 1] += cfg.shift_y * side
    grow = cfg.scale * (1.0 + cfg.increase_area)
    if orig_hw is not None:  # a photo collection: each image's own box, nothing shared
        h, w = orig_hw
        side = np.where(valid, side * grow, max(h, w))  # no face: the whole image
        centre[~valid] = [(w - 1) / 2, (h - 1) / 2]
    elif cfg.mode == "static":
        c = np.median(centre[valid], axis=0)
        s = np.quantile(side[valid], cfg.static_size_quantile) * grow
        centre = np.broadcast_to(c, centre.shape)
        side = np.full(len(box), s)
    else:  # smooth
        if cfg.smooth_sigma > 0:
            centre = gaussian_filter1d(centre, cfg.smooth_sigma, axis=0, mode="nearest")
        if cfg.smooth_sigma_size > 0:
            side = gaussian_filter1d(side, cfg.smooth_sigma_size, mode="nearest")
        side = side * grow
    half = side[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def fit_inside(box_xyxy: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
    """Move square boxes into the frame, shrinking those larger than its shorter side.

    Args:
        box_xyxy: (T, 4) square boxes, original pixels (edges).
        orig_hw: (h, w) of the frames.

    Returns:
        (T, 4) boxes inside [-0.5, w - 0.5] x [-0.5, h - 0.5], centres moved the least.
    """
    h, w = orig_hw
    side = np.minimum(box_xyxy[:, 2] - box_xyxy[:, 0], min(h, w))[:, None]
    centre = (box_xyxy[:, :2] + box_xyxy[:, 2:]) / 2
    lo = side / 2 - 0.5
    hi = np.array([w, h], np.float64) - 0.5 - side / 2
    centre = np.clip(centre, lo, hi)
    return np.concatenate([centre - side / 2, centre + side / 2], axis=1)


def overflow_px(box_xyxy: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
    """(T,) how far (pixels) each box reaches outside the [-0.5, W-0.5] x [-0.5, H-0.5] frame."""
    h, w = orig_hw
    lo = -0.5 - box_xyxy[:, :2]
    hi = box_xyxy[:, 2:] - (np.array([w, h]) - 0.5)
    return np.clip(np.concatenate([lo, hi], axis=1), 0, None).max(axis=1)


def make_crop(
    face_box: np.ndarray,
    valid: np.ndarray,
    orig_hw: tuple[int, int],
    frame_names: list[str],
    cfg: CropConfig,
    sequence: bool = True,
) -> CropTransforms:
    """Crop boxes and their transforms for a clip, or per image for a photo collection (not
    `sequence`; mode "per_image"); see `crop_boxes`, and `fit_inside` when ``cfg.inside_frame``.
    """
    box = crop_boxes(face_box, valid, cfg, None if sequence else orig_hw)
    if cfg.inside_frame:
        box = fit_inside(box, orig_hw)
    M = box_to_orig_to_crop(box, cfg.image_size)
    return CropTransforms(
        M,
        invert_affine(M),
        box,
        cfg.image_size,
        valid.copy(),
        np.asarray(orig_hw),
        np.asarray(frame_names, dtype=str),
        cfg.mode if sequence else "per_image",
    )


def box_accel_px(box_xyxy: np.ndarray, size: int) -> float:
    """Mean |second difference| of the crop centre, in crop pixels (0 for a static crop)."""
    if len(box_xyxy) < 3:
        return 0.0
    c = (box_xyxy[:, :2] + box_xyxy[:, 2:]) / 2
    scale = size / (box_xyxy[:, 2] - box_xyxy[:, 0])
    acc = np.linalg.norm(c[2:] - 2 * c[1:-1] + c[:-2], axis=1) * scale[1:-1]
    return float(acc.mean())


def face_margin(face_box: np.ndarray, crop_box: np.ndarray) -> np.ndarray:
    """(T,) smallest gap between the face box and the crop edge, as a fraction of the crop side
    (negative: the face reaches outside the crop; nan where the face box is nan)."""
    gaps = np.stack(
        [
            face_box[:, 0] - crop_box[:, 0],
            face_box[:, 1] - crop_box[:, 1],
            crop_box[:, 2] - face_box[:, 2],
            crop_box[:, 3] - face_box[:, 3],
        ],
        1,
    )
    return gaps.min(axis=1) / (crop_box[:, 2] - crop_box[:, 0])
