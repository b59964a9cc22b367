"""Recovery errors of a FLAME fit against the synthetic truth, for bench/fit_flame.py.

Everything here is measured with the independent oracle (`tests.fixtures.flame_oracle`), never
with the FLAME layer under test. Rotations: a fit and the truth share the camera (FLAME space
seen through ``diag(1, -1, -1)``, or IMAvatar's identity camera with its negated fx, the same
view), so the head's rotation in the camera frame is ``R_global @ R_neck`` for both.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from tests.fixtures.flame_oracle import FlameOracle

M_TO_MM = 1000.0


def _angle_deg(Ra: Rotation, Rb: Rotation) -> np.ndarray:
    return np.degrees((Ra.inv() * Rb).magnitude())


def _head(p: dict) -> Rotation:
    return Rotation.from_rotvec(p["global_pose"]) * Rotation.from_rotvec(p["neck_pose"])


def _gaze(p: dict, eye: slice) -> np.ndarray:
    """Gaze directions in the camera frame ``(T, 3)``: the eyes hang from the neck joint."""
    R = _head(p) * Rotation.from_rotvec(p["eyes_pose"][:, eye])
    return R.apply([0.0, 0.0, 1.0])


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((*a.shape[:-1], n))
    out[..., : a.shape[-1]] = a
    return out


class TruthEvaluator:
    """Errors of fitted parameters against one synthetic sequence's truth.

    Args:
        oracle: the oracle with the widest expression space any fit uses (n_expr 100).
        gt: true parameters (`tests.fixtures.synthetic_sequence.SyntheticSequence.gt`).
        clean_px: (T, 70, 2) noise-free landmarks.
        obs_px, obs_w: (T, 68, 2) observations and their weights (0 = missing).
    """

    def __init__(self, oracle: FlameOracle, gt: dict, clean_px, obs_px, obs_w):
        self.oracle, self.clean_px = oracle, clean_px
        self.obs_px, self.obs_w = obs_px, obs_w
        self.gt = {k: np.asarray(v, np.float64) for k, v in gt.items()}
        v = oracle.v_template
        on_eyes = oracle.weights[:, 3:].sum(1) > 0.5
        self.face = (v[:, 2] > np.median(v[:, 2])) & ~on_eyes  # the front half, no eyeballs

    def _expression_offsets(self, p: dict) -> np.ndarray:
        o = self.oracle
        d = np.einsum("vck,tk->tvc", o.exprdirs[self.face], _pad(p["expr"], o.n_expr))
        if o.eyelids is not None:
            d = d + np.einsum("vck,tk->tvc", o.eyelids[self.face], p["eyelids"])
        return d

    def param_errors(self, p: dict) -> dict:
        """Head, jaw and gaze angle errors (deg), expression and identity vertex errors (mm)."""
        gt, o = self.gt, self.oracle
        head = _angle_deg(_head(p), _head(gt))
        jaw = _angle_deg(Rotation.from_rotvec(p["jaw_pose"]), Rotation.from_rotvec(gt["jaw_pose"]))
        gaze = [
            np.degrees(np.arccos(np.clip((_gaze(p, e) * _gaze(gt, e)).sum(1), -1, 1)))
            for e in (slice(0, 3), slice(3, 6))
        ]
        e_err = np.linalg.norm(self._expression_offsets(p) - self._expression_offsets(gt), axis=-1)
        s_diff = np.einsum("vck,k->vc", o.shapedirs, _pad(p["shape"], o.n_shape) - gt["shape"])
        s_err = np.linalg.norm(s_diff, axis=-1)
        return {
            "head_rot_err_deg": float(head.mean()),
            "head_rot_err_max_deg": float(head.max()),
            "jaw_err_deg": float(jaw.mean()),
            "gaze_err_left_deg": float(gaze[0].mean()),
            "gaze_err_right_deg": float(gaze[1].mean()),
            "expr_vertex_err_mm": float(e_err.mean() * M_TO_MM),
            "identity_vertex_err_mm": float(s_err[self.face].mean() * M_TO_MM),
            "identity_vertex_err_all_mm": float(s_err.mean() * M_TO_MM),
        }

    def evaluate(self, p: dict, lmk_px: np.ndarray, focal_px: float, true_focal: float) -> dict:
        """All metrics of one fit (see bench/fit_flame.py's docstring)."""
        d = np.linalg.norm(lmk_px - self.clean_px, axis=-1)  # (T, 70)
        w = self.obs_w
        d_obs = np.linalg.norm(lmk_px[:, :68] - self.obs_px, axis=-1)
        rmse_obs = np.sqrt((d_obs**2 * w).sum(1) / np.maximum(w.sum(1), 1e-9))[w.sum(1) > 0]
        return {
            "lmk_rmse_vs_truth_px": float(np.sqrt((d**2).mean(1)).mean()),
            "contour_rmse_vs_truth_px": float(np.sqrt((d[:, :17] ** 2).mean(1)).mean()),
            "iris_err_vs_truth_px": float(d[:, 68:70].mean()),
            "lmk_rmse_vs_observed_px": float(rmse_obs.mean()),
            **self.param_errors(p),
            "focal_px": float(focal_px),
            "focal_err_pct": float(100 * (focal_px - true_focal) / true_focal),
        }
