"""Deep3DFaceRecon's 5-point alignment, vectorised over frames.

Deep3DFaceRecon (and PIRenderer's face_recon_videos, whose 5 "crop parameters" OTAvatar reads)
align each image to a 224x224 crop: five points (eye centres, nose tip, mouth corners) taken from
the 68 landmarks are fitted to the same five points of the mean 3D face by an orthographic POS
solve; the image is scaled by ``s = rescale_factor / pos_scale`` and cropped around the solved
translation. The recorded parameters are ``[w0, h0, s, t0, t1]`` with t in the y-UP pixel frame
of the source image (Deep3DFaceRecon flips rows with ``y_up = h0 - 1 - y`` before aligning).

Pixel coordinates here are OpenCV (x right, y down, pixel centres at integers) on both sides;
`aligned_from_source` is the similarity (scale s, no rotation) between them.
"""

from __future__ import annotations

import numpy as np

# iBUG-68 (0-based) -> Deep3DFaceRecon's 5 points: eye centres, nose tip, mouth corners.
_EYE_L, _EYE_R, _NOSE, _MOUTH_L, _MOUTH_R = (36, 39), (42, 45), 30, 48, 54


def five_points(lmk68: np.ndarray) -> np.ndarray:
    """(..., 68, D) landmarks -> (..., 5, D): left eye, right eye, nose, left/right mouth corner."""
    return np.stack(
        [
            lmk68[..., _EYE_L, :].mean(-2),
            lmk68[..., _EYE_R, :].mean(-2),
            lmk68[..., _NOSE, :],
            lmk68[..., _MOUTH_L, :],
            lmk68[..., _MOUTH_R, :],
        ],
        -2,
    )


def pos_align(
    lmk68_px: np.ndarray,
    image_hw: tuple[int, int],
    lm3d_5: np.ndarray,
    rescale_factor: float = 102.0,
) -> np.ndarray:
    """Alignment parameters of every frame.

    Args:
        lmk68_px: (T, 68, 2) landmarks in source pixels (y down).
        image_hw: (h0, w0) of the source images.
        lm3d_5: (5, 3) the five points of the mean 3D face (model units).
        rescale_factor: pixels per model unit in the aligned image (Deep3DFaceRecon: 102).

    Returns:
        (T, 5) float64 ``[w0, h0, s, t0, t1]``.
    """
    h0, w0 = image_hw
    p5 = five_points(np.asarray(lmk68_px, np.float64))
    p5_up = np.stack([p5[..., 0], (h0 - 1) - p5[..., 1]], -1)  # (T, 5, 2)
    # POS: [x_i, 1] k1 = u_i and [x_i, 1] k2 = v_i, the same design matrix for every frame.
    A = np.zeros((10, 8))
    A[0::2, 0:3], A[0::2, 3] = lm3d_5, 1
    A[1::2, 4:7], A[1::2, 7] = lm3d_5, 1
    k = p5_up.reshape(len(p5_up), 10) @ np.linalg.pinv(A).T  # (T, 8)
    pos_scale = (np.linalg.norm(k[:, 0:3], axis=1) + np.linalg.norm(k[:, 4:7], axis=1)) / 2
    s = rescale_factor / pos_scale
    t = k[:, [3, 7]]
    T = len(k)
    return np.stack([np.full(T, w0), np.full(T, h0), s, t[:, 0], t[:, 1]], 1)


def aligned_from_source(trans_params: np.ndarray, target_size: int = 224) -> np.ndarray:
    """(T, 2, 3) affine maps source pixels -> aligned pixels (both OpenCV, y down).

    Follows Deep3DFaceRecon's resize_n_crop_img landmark formula (without its integer rounding
    of the resized size, which moves points by < 1 aligned pixel).
    """
    w0, h0, s, t0, t1 = (trans_params[:, i] for i in range(5))
    half = target_size / 2
    # x_al = (x - t0 + w0/2) s - (w0 s/2 - half)
    ox = (w0 / 2 - t0) * s - (w0 * s / 2 - half)
    # rows count upward in Deep3DFaceRecon on both sides: y_up = h0-1-y, y_al = size-1-y_al_up
    oy_up = (h0 / 2 - t1) * s - (h0 * s / 2 - half)
    # y_al = (size-1) - ((h0-1-y) s + oy_up) = s y + (size-1) - (h0-1) s - oy_up
    oy = (target_size - 1) - (h0 - 1) * s - oy_up
    M = np.zeros((len(s), 2, 3))
    M[:, 0, 0], M[:, 1, 1], M[:, 0, 2], M[:, 1, 2] = s, s, ox, oy
    return M


def apply_affine(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affines applied to (T, K, 2) points."""
    return pts @ M[:, :, :2].transpose(0, 2, 1) + M[:, None, :, 2]


def invert_affine(M: np.ndarray) -> np.ndarray:
    """Inverse of (T, 2, 3) affine maps."""
    A = np.linalg.inv(M[:, :, :2])
    return np.concatenate([A, -(A @ M[:, :, 2:])], axis=2)
