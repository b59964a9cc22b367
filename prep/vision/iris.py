"""Iris centres from MediaPipe's refined face mesh (points 468-477), with per-eye validity.

Order (the IMAvatar / HRAvatar ``iris.json`` convention): index 0 ("a") is the subject's LEFT eye
(MediaPipe 473, on the image's right in an unmirrored frame), index 1 ("b") is the subject's
RIGHT eye (MediaPipe 468). IMAvatar appends ``iris[[1, 0]]`` as landmarks 69-70, i.e. the
subject's right then left eye, matching FLAME's ``landmark_embedding_with_eyes`` points 68
(x < 0, subject's right) and 69. Coordinates are crop pixels, OpenCV convention (pixel centres at
integer coordinates).

An iris is invalid when the face is missing, the eye is closed (eye aspect ratio below
``ear_closed``), the eye is turned away (its width is below ``min_eye_width_ratio`` times the other
eye's, as in profile views where the nose hides it), or the centre falls outside the eye outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prep.vision.landmarks.mapping import (
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LEFT_IRIS_CENTRE,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    RIGHT_IRIS_CENTRE,
    closed_loop,
)

# Per eye in output order (subject's left, subject's right): centre, corners, lid pairs.
_CENTRES = np.array([LEFT_IRIS_CENTRE, RIGHT_IRIS_CENTRE])
_OUTLINES = [
    closed_loop(LEFT_EYE_UPPER, LEFT_EYE_LOWER),
    closed_loop(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER),
]
# eye aspect ratio (Soukupova & Cech 2016) on MediaPipe points: corners, two upper/lower pairs
_CORNERS = np.array([[263, 362], [33, 133]])
_LIDS = np.array([[[387, 373], [385, 380]], [[160, 144], [158, 153]]])


@dataclass
class IrisResult:
    """Iris centres of a sequence.

    Attributes:
        iris_px: (T, 2, 2) float32 centres [subject's left, subject's right] x (x, y), crop pixels;
            NaN where the face is missing.
        valid: (T, 2) bool per eye.
        reason: (T, 2) str: "" when valid, else no_face | closed | turned_away | outside_eye.
        ear: (T, 2) float32 eye aspect ratio (NaN without a face).
    """

    iris_px: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    ear: np.ndarray

    def to_json_rows(self) -> np.ndarray:
        """(T, 4) rows [x_a, y_a, x_b, y_b] as written to iris.json."""
        return self.iris_px.reshape(len(self.iris_px), 4)


def eye_aspect_ratio(dense_px: np.ndarray) -> np.ndarray:
    """(T, 2) eye aspect ratio per eye (output order) from (T, 478, >=2) points."""
    xy = dense_px[..., :2]
    lids = np.linalg.norm(xy[:, _LIDS[..., 0]] - xy[:, _LIDS[..., 1]], axis=-1)  # (T, 2, 2)
    width = np.linalg.norm(xy[:, _CORNERS[:, 0]] - xy[:, _CORNERS[:, 1]], axis=-1)  # (T, 2)
    return lids.sum(-1) / (2.0 * np.maximum(width, 1e-6))


def points_in_polygons(pts: np.ndarray, polys: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over frames.

    Args:
        pts: (T, 2) points.
        polys: (T, N, 2) one closed polygon per frame.

    Returns:
        (T,) bool.
    """
    a = polys
    b = np.roll(polys, -1, axis=1)
    px, py = pts[:, None, 0], pts[:, None, 1]
    crosses = (a[..., 1] > py) != (b[..., 1] > py)
    denom = np.where(b[..., 1] == a[..., 1], 1e-12, b[..., 1] - a[..., 1])
    x_at = a[..., 0] + (py - a[..., 1]) * (b[..., 0] - a[..., 0]) / denom
    return (crosses & (px < x_at)).sum(axis=1) % 2 == 1


def iris_from_mesh(
    dense_px: np.ndarray,
    face_valid: np.ndarray,
    ear_closed: float = 0.12,
    min_eye_width_ratio: float = 0.45,
) -> IrisResult:
    """Iris centres and validity from dense MediaPipe points.

    Args:
        dense_px: (T, 478, 3) refined MediaPipe points in crop pixels (NaN where no face).
        face_valid: (T,) bool.
        ear_closed: eye aspect ratio below which an eye counts as closed.
        min_eye_width_ratio: an eye narrower than this times the other one is turned away.
    """
    if dense_px.shape[1:] != (478, 3):
        raise ValueError(f"iris needs refined 478-point meshes, got {dense_px.shape}")
    t = len(dense_px)
    xy = dense_px[..., :2].astype(np.float64)
    iris = xy[:, _CENTRES].astype(np.float32)
    ear = eye_aspect_ratio(xy).astype(np.float32)
    width = np.linalg.norm(xy[:, _CORNERS[:, 0]] - xy[:, _CORNERS[:, 1]], axis=-1)
    ratio = width / np.maximum(width[:, ::-1], 1e-6)
    inside = np.stack(
        [points_in_polygons(xy[:, _CENTRES[k]], xy[:, _OUTLINES[k]]) for k in range(2)], axis=1
    )
    reason = np.full((t, 2), "", dtype="<U16")
    reason[~inside] = "outside_eye"
    reason[ear < ear_closed] = "closed"
    reason[ratio < min_eye_width_ratio] = "turned_away"
    no_face = ~face_valid.astype(bool) | ~np.isfinite(xy[:, _CENTRES]).all(axis=(1, 2))
    reason[no_face] = "no_face"
    iris[no_face] = np.nan
    ear[no_face] = np.nan
    return IrisResult(iris, reason == "", reason, ear)
