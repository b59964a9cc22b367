"""One-subject face tracking on top of per-frame detections.

Pixel convention (as in `prep.vision.detect_backends`): pixel centres at integer coordinates,
pixel (0, 0) covers [-0.5, 0.5]^2; boxes are (x0, y0, x1, y1) edges in ORIGINAL pixels.

`track_subject` turns every frame's candidates into one box per frame for one person:
- the track starts on a face of the first frame with faces: each is followed through the clip and
  the one whose track covers the most face area is the subject;
- a candidate continues it when it overlaps the last box (IoU) or its centre moved little; among
  those the best-overlapping one wins, so a bystander is never taken while the subject is visible;
- when nothing matches the frame is a miss; only after `reacquire_after` misses may the track
  restart, on the candidate closest to where the subject was last seen (size-weighted);
- gaps of up to `max_gap` frames between (or at the ends of) found frames are filled by linear
  interpolation (held at the ends) and marked `interpolated`; longer gaps stay invalid.
`largest_face_per_image` is the rule for a photo collection: each image's largest face, nothing
carried or interpolated between images.

detect/detections.npz keys (T frames, M = most faces in one frame):
    frame_names (T,) str, box_xyxy (T,4) float32, score (T,) float32 (0 where not detected),
    valid (T,) bool (detected or interpolated), interpolated (T,) bool, reason (T,) str
    (ok | interpolated | no_face | no_match), kps_px (T,6,2) float32 (nan when unknown),
    n_faces (T,) int32 candidates seen, image_hw (2,) int (h, w of the original frames),
    backend str.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from prep.config.perception import DetectConfig

log = logging.getLogger(__name__)

REASONS = ("ok", "interpolated", "no_face", "no_match")


@dataclass
class DetectionTrack:
    """One box per frame for one subject.

    Attributes:
        box_xyxy: (T, 4) float32 original pixels; nan where invalid.
        score: (T,) float32 detector score (0 where not detected).
        valid: (T,) bool: detected, or inside a short interpolated gap.
        interpolated: (T,) bool: box filled in from neighbours.
        reason: (T,) str, one of `REASONS`.
        kps_px: (T, 6, 2) float32 keypoints (nan where unknown or interpolated).
        n_faces: (T,) int32 number of faces the detector returned.
    """

    box_xyxy: np.ndarray
    score: np.ndarray
    valid: np.ndarray
    interpolated: np.ndarray
    reason: np.ndarray
    kps_px: np.ndarray
    n_faces: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "box_xyxy": self.box_xyxy,
            "score": self.score,
            "valid": self.valid,
            "interpolated": self.interpolated,
            "reason": self.reason,
            "kps_px": self.kps_px,
            "n_faces": self.n_faces,
        }

    @staticmethod
    def from_arrays(d: dict[str, np.ndarray]) -> DetectionTrack:
        return DetectionTrack(
            d["box_xyxy"].astype(np.float32),
            d["score"].astype(np.float32),
            d["valid"].astype(bool),
            d["interpolated"].astype(bool),
            d["reason"].astype(str),
            d["kps_px"].astype(np.float32),
            d["n_faces"].astype(np.int32),
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between one box `a` (4,) and boxes `b` (n, 4)."""
    lo = np.maximum(a[:2], b[:, :2])
    hi = np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area_a = np.prod(a[2:] - a[:2])
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def box_side(b: np.ndarray) -> np.ndarray:
    """Side of a square with the box's area; (..., 4) -> (...)."""
    return np.sqrt(np.clip((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]), 0, None))


def box_centre(b: np.ndarray) -> np.ndarray:
    """(..., 4) -> (..., 2)."""
    return (b[..., :2] + b[..., 2:]) / 2


def _pick(boxes: np.ndarray, last: np.ndarray | None, misses: int, cfg: DetectConfig) -> int | None:
    """Index of the candidate that continues the track, or None (a miss)."""
    if len(boxes) == 0:
        return None
    area = box_side(boxes) ** 2
    if last is None:
        return int(np.argmax(area))
    iou = box_iou(last, boxes)
    dist = np.linalg.norm(box_centre(boxes) - box_centre(last), axis=1) / max(box_side(last), 1.0)
    ok = (iou > cfg.min_iou) | (dist < cfg.max_jump)
    if ok.any():
        return int(np.argmax(np.where(ok, iou - 0.1 * dist, -np.inf)))
    if misses >= cfg.reacquire_after:
        return int(np.argmax(area / (1.0 + dist)))
    return None


def _follow(
    boxes: np.ndarray,
    n_faces: np.ndarray,
    cfg: DetectConfig,
    start: tuple[int, int] | None,
    reacquire: bool = True,
) -> np.ndarray:
    """(T,) index of the chosen candidate per frame (-1 = miss), optionally seeded at `start`;
    without `reacquire` the track ends once lost for good (used to score seeds)."""
    T = len(n_faces)
    pick = np.full(T, -1, np.int64)
    last, misses, t0 = None, 0, 0
    if start is not None:
        t0, j0 = start
        pick[t0], last, t0 = j0, boxes[t0, j0], t0 + 1
    for t in range(t0, T):
        n = int(n_faces[t])
        j = _pick(boxes[t, :n], last, misses, cfg)
        if j is None:
            misses += 1
            if not reacquire and misses >= cfg.reacquire_after:
                break
            continue
        pick[t], last, misses = j, boxes[t, j], 0
    return pick


def track_subject(
    boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, n_faces: np.ndarray, cfg: DetectConfig
) -> DetectionTrack:
    """Select the subject in every frame, then bridge short gaps.

    When the first frame with faces shows several, each is followed through the clip and the
    one whose track covers the most face area wins (the subject, not a passer-by who happened
    to be largest at the start).

    Args:
        boxes: (T, M, 4) candidate boxes per frame (padded; only the first n_faces[t] are real).
        scores: (T, M) candidate scores.
        kps: (T, M, 6, 2) candidate keypoints.
        n_faces: (T,) number of real candidates per frame.
        cfg: tracking thresholds.

    Returns:
        The subject's track.
    """
    T = len(n_faces)
    first = np.flatnonzero(n_faces > 0)
    pick = np.full(T, -1, np.int64)
    if len(first):
        t0 = int(first[0])
        areas = []
        for j0 in range(int(n_faces[t0])):
            cand = _follow(boxes, n_faces, cfg, (t0, j0), reacquire=False)
            hit = np.flatnonzero(cand >= 0)
            areas.append(float((box_side(boxes[hit, cand[hit]]) ** 2).sum()))
        pick = _follow(boxes, n_faces, cfg, (t0, int(np.argmax(areas))))
    found = pick >= 0
    t_idx = np.flatnonzero(found)
    out_box = np.full((T, 4), np.nan, np.float32)
    out_score = np.zeros(T, np.float32)
    out_kps = np.full((T, kps.shape[2], 2), np.nan, np.float32)
    out_box[t_idx], out_score[t_idx] = boxes[t_idx, pick[t_idx]], scores[t_idx, pick[t_idx]]
    out_kps[t_idx] = kps[t_idx, pick[t_idx]]
    reason = np.where(found, "ok", np.where(n_faces > 0, "no_match", "no_face")).astype("<U12")
    interp = _fill_short_gaps(out_box, found, cfg.max_gap)
    reason[interp] = "interpolated"
    return DetectionTrack(
        out_box, out_score, found | interp, interp, reason, out_kps, n_faces.astype(np.int32)
    )


def largest_face_per_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    kps: np.ndarray,
    n_faces: np.ndarray,
    cfg: DetectConfig | None = None,
) -> DetectionTrack:
    """Each image's largest face, for unrelated photos (arguments as `track_subject`'s)."""
    T = len(n_faces)
    area = box_side(boxes) ** 2
    real = np.arange(boxes.shape[1])[None, :] < n_faces[:, None]
    area = np.where(real & np.isfinite(area), area, -1.0)
    pick = np.argmax(area, axis=1)
    found = n_faces > 0
    t = np.arange(T)
    box = np.where(found[:, None], boxes[t, pick], np.nan).astype(np.float32)
    score = np.where(found, scores[t, pick], 0.0).astype(np.float32)
    kp = np.where(found[:, None, None], kps[t, pick], np.nan).astype(np.float32)
    reason = np.where(found, "ok", "no_face").astype("<U12")
    none = np.zeros(T, bool)
    return DetectionTrack(box, score, found, none, reason, kp, n_faces.astype(np.int32))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges where `mask` is True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def _fill_short_gaps(box: np.ndarray, found: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill gaps of at most `max_gap` frames in place; returns the (T,) mask of filled frames."""
    filled = np.zeros(len(found), bool)
    if not found.any():
        return filled
    idx = np.flatnonzero(found)
    for a, b in _runs(~found):
        if b - a > max_gap:
            continue
        t = np.arange(a, b)
        # np.interp holds the end values, which covers gaps at the clip's start and end.
        for k in range(4):
            box[a:b, k] = np.interp(t, idx, box[idx, k])
        filled[a:b] = True
    return filled
