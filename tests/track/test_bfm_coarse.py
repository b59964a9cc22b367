"""Deep3DFaceRecon alignment and the per-frame landmark fit, against known parameters."""

from __future__ import annotations

import numpy as np
import torch

from prep.config.bfm import CoarseConfig, LandmarksCoarseConfig
from prep.models.bfm import adnerf_rotation, deep3d_rotation
from prep.models.rotations import rotation_angle_deg
from prep.track.bfm_align import (
    aligned_from_source,
    apply_affine,
    five_points,
    invert_affine,
    pos_align,
)
from prep.track.bfm_coarse import fit_landmarks, project_keypoints
from tests.fixtures.synthetic_bfm import adnerf_sequence


def _lm3d(model) -> np.ndarray:
    return five_points(model.mean_shape[model.keypoints].numpy().astype(np.float64))


def test_alignment_matches_deep3d_formulas_and_inverts():
    rng = np.random.default_rng(0)
    lmk = rng.uniform(100, 400, (3, 68, 2))
    lm3d = rng.normal(0, 0.5, (5, 3))
    tp = pos_align(lmk, (480, 640), lm3d)
    np.testing.assert_array_equal(tp[:, :2], [[640, 480]] * 3)
    M = aligned_from_source(tp, 224)
    w0, h0, s, t0, t1 = tp[1]
    x, y = lmk[1, :, 0], lmk[1, :, 1]
    # Deep3DFaceRecon resize_n_crop_img on y-up landmarks, then rows flipped back to y-down.
    y_up = h0 - 1 - y
    x_al = (x - t0 + w0 / 2) * s - (w0 * s / 2 - 112)
    y_al_up = (y_up - t1 + h0 / 2) * s - (h0 * s / 2 - 112)
    np.testing.assert_allclose(apply_affine(M, lmk)[1], np.stack([x_al, 223 - y_al_up], 1))
    np.testing.assert_allclose(apply_affine(invert_affine(M), apply_affine(M, lmk)), lmk)


def test_alignment_scale_is_rescale_factor_pixels_per_unit(bfm_model):
    # An orthographic frontal face at 300 px/unit -> the aligned image has 102 px/unit.
    kp = bfm_model.mean_shape[bfm_model.keypoints].numpy().astype(np.float64)
    lmk = np.stack([300 * kp[:, 0] + 256, 511 - (300 * kp[:, 1] + 256)], 1)[None]
    tp = pos_align(lmk, (512, 512), _lm3d(bfm_model))
    np.testing.assert_allclose(tp[0, 2], 102 / 300, rtol=1e-6)
    np.testing.assert_allclose(tp[0, 3:], [256, 256], atol=1e-6)  # t is y-up


def test_rigid_fit_recovers_deep3d_pose_exactly(bfm_model):
    g = torch.Generator().manual_seed(0)
    T = 16
    ang = (torch.rand(T, 3, generator=g) - 0.5) * torch.tensor([0.5, 1.2, 0.3])
    tr = torch.randn(T, 3, generator=g) * torch.tensor([0.1, 0.1, 0.3])
    s, o = CoarseConfig(), LandmarksCoarseConfig(iters_rigid=200, iters=0)
    kp = bfm_model.subset(bfm_model.keypoints)
    with torch.no_grad():
        lmk = project_keypoints(kp, torch.zeros(T, 80), torch.zeros(T, 64), ang, tr, s).numpy()
    fit = fit_landmarks(bfm_model, lmk, np.ones((T, 68)), s, o)
    assert np.median(fit.lmk_rmse_px) < 0.01
    np.testing.assert_allclose(fit.angles, ang.numpy(), atol=np.radians(0.05))
    np.testing.assert_allclose(fit.trans, tr.numpy(), atol=1e-3)


def test_full_fit_of_a_perspective_sequence(bfm_model):
    T = 40
    seq = adnerf_sequence(bfm_model, T, focal=1100, size=512, seed=3)
    tp = pos_align(seq["lmk_px"], (512, 512), _lm3d(bfm_model))
    lmk_al = apply_affine(aligned_from_source(tp), seq["lmk_px"])
    w = np.ones((T, 68))
    w[5] = 0  # a frame without landmarks must not disturb the others
    fit = fit_landmarks(bfm_model, lmk_al, w, CoarseConfig(), LandmarksCoarseConfig())
    ok = np.arange(T) != 5
    assert np.median(fit.lmk_rmse_px[ok]) < 0.5
    err = rotation_angle_deg(
        deep3d_rotation(torch.tensor(fit.angles[ok]).double()),
        adnerf_rotation(torch.tensor(seq["euler"][ok])),
    )
    # Per-frame identity and expression absorb part of the pose (and the cameras differ).
    assert err.mean() < 5.0 and err.max() < 9.0
