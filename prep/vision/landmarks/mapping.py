"""MediaPipe face-mesh (478 points) to iBUG 68-point mapping, and mesh region outlines.

Every 68-point index is one MediaPipe vertex. The jaw contour (0-16) uses only vertices of
MediaPipe's face oval (`FACEMESH_FACE_OVAL`), so it follows the visible cheek/chin silhouette like
dlib's contour does. The inner points were chosen as the mesh vertex nearest, on average, to dlib's
``shape_predictor_68`` point over 42 real images (two photos, 40 frames of the shared clips), in
inter-ocular units, with symmetric pairs kept mirror-consistent. Mean distances to dlib per group
(inter-ocular units): jaw 0.09, brows 0.07, nose 0.04, eyes 0.03, lips 0.04. The test
tests/vision/landmarks/test_mapping.py re-checks these against dlib on the shared photos.

Side names follow the subject: "right" is the subject's right, which appears on the image's
left in an unmirrored frame. MediaPipe's refined iris centres are 468 (subject's right) and 473
(subject's left).
"""

from __future__ import annotations

import numpy as np

# iBUG 68 order; comments give the 68-point index range.
MP478_TO_68 = np.concatenate(
    [
        # 0-16 jaw, subject's right ear -> chin -> left ear (face-oval vertices only)
        (127, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 356),
        # 17-21 right brow (outer -> inner), 22-26 left brow (inner -> outer)
        (70, 63, 105, 66, 55, 285, 296, 334, 293, 300),
        # 27-30 nose bridge (top -> tip), 31-35 nostril base (image left -> right)
        (168, 197, 5, 4, 75, 97, 2, 326, 305),
        # 36-41 right eye (outer corner, upper lid x2, inner corner, lower lid x2)
        (33, 160, 158, 155, 153, 144),
        # 42-47 left eye (inner corner, upper lid x2, outer corner, lower lid x2)
        (382, 385, 387, 263, 373, 380),
        # 48-59 outer lips (left corner in image, along the upper lip, back along the lower)
        (61, 74, 37, 11, 267, 304, 291, 405, 314, 17, 84, 181),
        # 60-67 inner lips
        (78, 82, 13, 312, 308, 317, 14, 87),
    ]
).astype(np.int64)

# Index ranges of the 68-point groups (used by tests, jitter metrics and overlays).
GROUPS_68: dict[str, np.ndarray] = {
    "jaw": np.arange(0, 17),
    "brows": np.arange(17, 27),
    "nose": np.arange(27, 36),
    "eyes": np.arange(36, 48),
    "lips": np.arange(48, 68),
}
NOSE_BRIDGE_68 = np.arange(27, 31)
RIGHT_EYE_68 = np.arange(36, 42)
LEFT_EYE_68 = np.arange(42, 48)

# Polylines between consecutive points of the 68-point layout, for drawing.
POLYLINES_68: list[tuple[np.ndarray, bool]] = [
    (np.arange(0, 17), False),
    (np.arange(17, 22), False),
    (np.arange(22, 27), False),
    (np.arange(27, 31), False),
    (np.arange(31, 36), False),
    (np.arange(36, 42), True),
    (np.arange(42, 48), True),
    (np.arange(48, 60), True),
    (np.arange(60, 68), True),
]

# ---- ordered MediaPipe outlines used to rasterise face regions (parsing=mesh) ----------------
# In outline order from the forehead, round the subject's left side, chin, then the right side.
FACE_OVAL = np.concatenate(
    [
        (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377),
        (152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
    ]
)
LIPS_OUTER_UPPER = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291])
LIPS_OUTER_LOWER = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
LIPS_INNER_UPPER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
LIPS_INNER_LOWER = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
RIGHT_EYE_UPPER = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133])
RIGHT_EYE_LOWER = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133])
LEFT_EYE_UPPER = np.array([263, 466, 388, 387, 386, 385, 384, 398, 362])
LEFT_EYE_LOWER = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362])
RIGHT_BROW_UPPER = np.array([70, 63, 105, 66, 107])
RIGHT_BROW_LOWER = np.array([46, 53, 52, 65, 55])
LEFT_BROW_UPPER = np.array([300, 293, 334, 296, 336])
LEFT_BROW_LOWER = np.array([276, 283, 282, 295, 285])
# Nose: its region is the convex hull of these vertices (bridge, sides, alae, nostril base).
NOSE_HULL = np.concatenate(
    [
        (168, 193, 417, 122, 351, 188, 412, 114, 343, 217, 437, 198, 420, 131, 360, 49, 279, 129),
        (358, 64, 294, 98, 327, 97, 326, 2, 19, 1, 4, 6, 197, 195, 5),
    ]
)
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473
RIGHT_IRIS_RING = np.array([469, 470, 471, 472])
LEFT_IRIS_RING = np.array([474, 475, 476, 477])


def closed_loop(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Polygon from two polylines sharing their end points: upper, then lower reversed.

    Args:
        upper: (n,) vertex ids from one end point to the other.
        lower: (m,) vertex ids between the same end points (shared ends are dropped).
    """
    if upper[0] == lower[0] and upper[-1] == lower[-1]:
        return np.concatenate([upper, lower[-2:0:-1]])
    return np.concatenate([upper, lower[::-1]])


def mp478_to_68(points: np.ndarray) -> np.ndarray:
    """Select the 68 iBUG points from MediaPipe's dense points.

    Args:
        points: (..., 478, D) or (..., 468, D) MediaPipe points.

    Returns:
        (..., 68, D) points in iBUG order.
    """
    if points.shape[-2] < 468:
        raise ValueError(f"expected 468 or 478 MediaPipe points, got {points.shape[-2]}")
    return points[..., MP478_TO_68, :]
