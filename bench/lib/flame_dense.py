"""Dense MediaPipe observations for bench/fit_flame.py, drawn with the independent oracle.

The default landmark backend (MediaPipe face mesh) gives, besides the 68 iBUG points, the 478
mesh points; FLAME's ``mediapipe_landmark_embedding.npz`` names the 105 of them it matches with
points on the FLAME surface. MediaPipe's points do not sit exactly there: its mesh is its own
regression of the face, so each point is off the FLAME embedding's surface point by an amount
that is the same in every frame (a systematic, per-point error), plus per-frame detector noise.
The model here:

- a fixed 3D offset per point, drawn once per sequence (``offset_mm`` per axis), in the head's
  frame (it turns with the head, as a misplaced surface point does);
- per-frame Gaussian noise in pixels (``noise_px``, as the 68 points get) and the same rate of
  5-15 px outliers as the 68 points;
- missing where the 68 points are missing (the mesh and the 68 come from one detection).

Its random draws come from their own generator, so adding them changes nothing else the
benchmark draws (truth, 68-point noise, the simulated DECA code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_sequence import project_px


@dataclass
class DenseNoise:
    """How far MediaPipe's dense points are from FLAME's embedding (our assumptions)."""

    offset_mm: float = 1.5  # per-axis sd of each point's fixed 3D offset (head frame)
    noise_px: float = 1.0  # per-frame Gaussian noise
    outlier_rate: float = 0.01  # share of points off by ~10 px (as the 68 points)


def dense_points_3d(oracle: FlameOracle, gt: dict, chunk: int = 128) -> np.ndarray:
    """The embedding's points on the posed truth ``(T, M, 3)``, `chunk` full meshes at a time."""
    T = len(gt["expr"])
    out = []
    for i in range(0, T, chunk):
        part = {k: (v if k == "shape" else v[i : i + chunk]) for k, v in gt.items()}
        verts, _ = oracle.draw(part)
        out.append(oracle.mediapipe_points(verts))
    return np.concatenate(out)


def dense_observations(
    oracle: FlameOracle,
    gt: dict,
    focal: float,
    c: float,
    valid: np.ndarray,
    seed: int,
    noise: DenseNoise | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed dense points ``(T, M, 2)`` (crop pixels) and their weights ``(T, M)``.

    Args:
        oracle: built with ``dense=True`` (the MediaPipe embedding).
        gt: true parameters (float64). focal, c: the truth's camera (crop pixels).
        valid: (T,) frames with landmarks. seed: the sequence's seed.
    """
    noise = noise or DenseNoise()
    rng = np.random.default_rng([seed, 105])  # its own stream: other draws stay as they were
    gt = {k: np.asarray(v, np.float64) for k, v in gt.items()}
    pts = dense_points_3d(oracle, gt)
    T, M = pts.shape[:2]
    offset = rng.normal(0, noise.offset_mm / 1000, (M, 3))
    head = Rotation.from_rotvec(gt["global_pose"]) * Rotation.from_rotvec(gt["neck_pose"])
    pts = pts + np.einsum("tab,mb->tma", head.as_matrix(), offset)
    obs = project_px(pts, focal, c) + rng.normal(0, noise.noise_px, (T, M, 2))
    out = rng.random((T, M)) < noise.outlier_rate
    obs[out] += rng.normal(0, 10, (out.sum(), 2))
    w = np.repeat(np.asarray(valid, bool)[:, None], M, 1).astype(np.float64)
    return np.where(w[..., None] > 0, obs, 0.0), w
