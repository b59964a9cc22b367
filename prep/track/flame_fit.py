"""Fitting FLAME to a sequence: model loading, initialisation, phases, results.

`fit_sequence` is what the fit_flame stage and the benchmark call: it needs a `FlameModel`, the
observations (`TrackingData`) and the camera, and returns the fitted parameters with per-frame
metrics. Camera conventions: see `prep.track.flame_params`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from prep.config.core import Precision, TrainerConfig
from prep.config.flame import FlameConfig, TrackerConfig
from prep.errors import BadConfigError, BadInputError
from prep.models import flame_tracking
from prep.models.camera import shared_or_per_frame
from prep.models.flame import FlameModel
from prep.models.flame_io import (
    load_flame_model,
    load_landmark_embedding,
    load_mediapipe_embedding,
)
from prep.track.flame_data import FlameDataModule, TrackingData
from prep.track.flame_params import FlameParams, InitValues, w2c_flame
from prep.track.flame_tracker import FlameTracker, PhaseLog, fit_phases
from prep.track.metrics import landmark_rmse_px, lmk_accel_px, mean_point_error_px, nanmean
from prep.track.trainer import precision_dtype

log = logging.getLogger(__name__)


def flame_assets(flame_cfg: FlameConfig, tracker_cfg: TrackerConfig) -> list[str]:
    """Asset names fit_flame needs for this config."""
    names = [str(flame_cfg.version)]
    names.append(
        "flame_lmk_embedding_eyes" if flame_cfg.embedding == "eyes" else "flame_lmk_embedding"
    )
    return names  # + DENSE_ASSET when there (optional: without it the fit leaves w.dense out)


DENSE_ASSET = "flame_mediapipe_embedding"


def build_flame(
    paths: dict[str, Path], flame_cfg: FlameConfig, dense: bool, dtype=torch.float32
) -> FlameModel:
    """Load the FLAME model and embeddings named by `flame_assets` from resolved `paths`."""
    data = load_flame_model(paths[flame_cfg.version])
    key = "flame_lmk_embedding_eyes" if flame_cfg.embedding == "eyes" else "flame_lmk_embedding"
    emb = load_landmark_embedding(paths[key])
    mp = load_mediapipe_embedding(paths[DENSE_ASSET]) if dense else None
    return FlameModel(data, flame_cfg.n_shape, flame_cfg.n_expr, emb, mp, dtype=dtype)


@dataclass
class Camera:
    """Intrinsics in original pixels; focal None = estimate it."""

    fx: float | None
    fy: float | None
    cx: float
    cy: float


@dataclass
class FitOutput:
    """Result of `fit_sequence` (numpy)."""

    params: dict[str, np.ndarray]  # shape, expr, global/neck/jaw/eyes pose, eyelids, transl (T,3)
    K_orig: np.ndarray  # (3, 3)
    lmk_px: np.ndarray  # (T, 68|70, 2) fitted landmarks, crop pixels
    lmk_rmse_px: np.ndarray  # (T,) NaN where invalid
    iris_err_px: np.ndarray  # (T,)
    lmk_accel_px: np.ndarray  # (T,)
    phases: list[PhaseLog] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        return {
            "lmk_rmse_px": nanmean(self.lmk_rmse_px),
            "iris_err_px": nanmean(self.iris_err_px),
            "lmk_accel_px": nanmean(self.lmk_accel_px),
            "focal_px": float(self.K_orig[0, 0]),
            "fit_seconds": self.seconds,
        }


@torch.no_grad()
def _face_spread(flame: FlameModel, data: TrackingData, shape: torch.Tensor):
    """Centre and RMS spread of the inner-face points: model ``(3,)`` m and ``()`` m at rest,
    observed ``(T, 2)`` and ``(T,)`` crop pixels (the contour is left out: it slides)."""
    lmk3d, _, _ = flame_tracking.landmarks(flame, flame_tracking.rest_params(shape, flame.n_expr))
    pts_m = lmk3d[0, 17:68].double().numpy()
    c_m = pts_m.mean(0)
    s_m = np.sqrt(((pts_m[:, :2] - c_m[:2]) ** 2).sum(-1).mean())
    obs, w = data.lmk_px[:, 17:], data.lmk_w[:, 17:]
    wsum = np.maximum(w.sum(1, keepdims=True), 1e-9)
    c_px = (obs * w[..., None]).sum(1) / wsum
    s_px = np.sqrt((((obs - c_px[:, None]) ** 2).sum(-1) * w).sum(1) / wsum[:, 0])
    return c_m, s_m, c_px, s_px


def focal_from_distance(flame: FlameModel, data: TrackingData, distance_m: float) -> float:
    """The focal (original pixels) that puts the mean head's origin `distance_m` from the camera.

    A pinhole sees a face of spread ``s_m`` metres at depth ``d`` as ``f s_m / d`` pixels, so
    ``f = d s_px / s_m``; ``d`` is the face's depth (the origin's less the face's offset in
    front of it), the observed spread is taken back to original pixels (the crop's scale), and
    the median is over frames with landmarks.
    """
    shape = torch.zeros(flame.n_shape, dtype=flame.v_template.dtype)
    c_m, s_m, _, s_px = _face_spread(flame, data, shape)
    depth_m = distance_m - float(c_m[2])
    crop_scale = np.sqrt(np.abs(np.linalg.det(data.orig_to_crop[:, :2, :2])))
    ok = data.valid & (s_px > 0)
    if not ok.any():
        raise BadInputError("no frame with landmarks: the focal length cannot be set")
    return float(np.median(depth_m * s_px[ok] / crop_scale[ok] / s_m))


@torch.no_grad()
def rigid_init(
    flame: FlameModel, data: TrackingData, K_orig: np.ndarray, shape: np.ndarray | None = None
) -> InitValues:
    """Per-frame translation from the landmarks' centroid and spread (zero rotation).

    Depth follows from the ratio of the model's landmark spread (metres) to the observed spread
    (pixels) times the focal length; invalid frames are interpolated.
    """
    dt = flame.v_template.dtype
    sh = torch.zeros(flame.n_shape, dtype=dt) if shape is None else torch.as_tensor(shape, dtype=dt)
    c_m, s_m, c_px, s_px = _face_spread(flame, data, sh)
    K = data.orig_to_crop @ K_orig  # (T, 3, 3)
    f = np.sqrt(K[:, 0, 0] * K[:, 1, 1])
    d = f * s_m / np.maximum(s_px, 1e-6)
    X = (c_px[:, 0] - K[:, 0, 2]) * d / K[:, 0, 0]
    Y = (c_px[:, 1] - K[:, 1, 2]) * d / K[:, 1, 1]
    transl = np.stack([X, -Y, -d], 1) - c_m  # x_cam = F (x + transl)
    ok = data.valid
    t_all = np.arange(len(ok))
    for k in range(3):
        transl[~ok, k] = np.interp(t_all[~ok], t_all[ok], transl[ok, k])
    return InitValues(shape=None if shape is None else sh.numpy(), transl=transl)


def init_from_deca_code(code: dict, names: np.ndarray, n_shape: int, n_expr: int) -> InitValues:
    """Initial shape/expression/pose from DECA's ``code.json`` (IMAvatar's init).

    Keys may be frame names, their stems, or 1-based frame numbers (IMAvatar's numbering).
    """
    T = len(names)
    shape, expr = np.zeros((T, n_shape)), np.zeros((T, n_expr))
    gp, jaw = np.zeros((T, 3)), np.zeros((T, 3))
    found = np.zeros(T, bool)
    for i, nm in enumerate(names):
        stem = Path(str(nm)).stem
        for key in (str(nm), stem, str(i + 1), f"{i + 1}.png"):
            if key in code:
                c = code[key]
                s = np.asarray(c["shape"], np.float64).reshape(-1)[:n_shape]
                e = np.asarray(c["exp"], np.float64).reshape(-1)[:n_expr]
                p = np.asarray(c["pose"], np.float64).reshape(-1)
                shape[i, : len(s)], expr[i, : len(e)] = s, e
                gp[i], jaw[i] = p[:3], p[3:6]
                found[i] = True
                break
    if not found.any():
        raise BadInputError("DECA code.json has no entry matching the subject's frame names")
    return InitValues(shape=shape[found].mean(0), expr=expr, global_pose=gp, jaw_pose=jaw)


def fit_sequence(
    flame: FlameModel,
    data: TrackingData,
    camera: Camera,
    cfg: TrackerConfig,
    init: InitValues | None = None,
    fixed_shape: np.ndarray | None = None,
    device: str = "cpu",
    on_phase_end: Callable[[PhaseLog], None] | None = None,
    trainer: TrainerConfig | None = None,
    logger=None,
) -> FitOutput:
    """Fit FLAME to all frames of a sequence at once.

    Args:
        flame: FLAME layer with a landmark embedding (dtype decides the fit's precision).
        data: observations and crop transforms.
        camera: intrinsics in original pixels (fx None: estimate a shared focal).
        cfg: tracker config (phases, weights).
        init: initial values (merged over the rigid init), or None.
        fixed_shape: (n_shape,) identity kept fixed (``shape_from``), or None.
        device: torch device.
        on_phase_end: callback per finished phase.
        trainer: the Lightning Trainer settings (None: defaults at the model's precision);
            their precision must be the model's dtype.
        logger: a Lightning logger for the per-step loss terms and metrics, or None.
    """
    t0 = time.perf_counter()
    dt = flame.v_template.dtype
    trainer = trainer or TrainerConfig(
        precision=Precision["64-true" if dt == torch.float64 else "32-true"]
    )
    if precision_dtype(trainer.precision) != dt:
        raise BadConfigError(
            f"trainer.precision={trainer.precision} but the FLAME model is {dt}; build it with "
            "prep.track.flame_fit.fit_dtype(trainer)"
        )
    params = _make_params(flame, data, camera, cfg)
    K0 = params.K_orig().detach().double().numpy()
    base = rigid_init(flame, data, K0, fixed_shape)
    params.load(base)
    if init is not None:
        params.load(init)
    if fixed_shape is not None:
        params.load(InitValues(shape=fixed_shape))
    dm = FlameDataModule(data, dtype=dt)
    tracker = FlameTracker(flame, params, cfg, dm.batch, fixed_shape=fixed_shape is not None)

    def phase_end(k: int, entry: PhaseLog) -> None:
        if k == 0:  # after the rigid init, invalid frames start from their neighbours' values
            params.bridge(data.valid)
        if on_phase_end is not None:
            on_phase_end(entry)

    logs = fit_phases(tracker, dm, list(cfg.phases), device, phase_end, trainer, logger)
    params.bridge(data.valid)
    return _finish(tracker, dm, data, logs, time.perf_counter() - t0)


def fit_dtype(trainer: TrainerConfig) -> torch.dtype:
    """The FLAME model's dtype for a trainer precision (32-true: float32, 64-true: float64)."""
    return precision_dtype(trainer.precision)


def _make_params(flame: FlameModel, data: TrackingData, camera: Camera, cfg) -> FlameParams:
    if camera.fx is None:  # the prior (focal_prior_distance_m), then maybe optimised
        fx, aspect = focal_from_distance(flame, data, cfg.focal_prior_distance_m), 1.0
        log.info(
            "fx not given: focal %.0f px from a head %.2f m away (fit_flame.focal_prior_"
            "distance_m)%s",
            fx,
            cfg.focal_prior_distance_m,
            ", optimised from there" if cfg.estimate_focal else "",
        )
    else:
        fy = camera.fx if camera.fy is None else camera.fy  # fx alone: square pixels
        fx, aspect = camera.fx, fy / camera.fx
    estimate = camera.fx is None and cfg.estimate_focal
    return FlameParams(
        data.n_frames,
        flame.n_shape,
        flame.n_expr,
        flame.has_eyelids,
        cfg.with_translation,
        fx,
        estimate,
        aspect,
        camera.cx,
        camera.cy,
        dtype=flame.v_template.dtype,
    )


@torch.no_grad()
def _finish(tracker: FlameTracker, dm: FlameDataModule, data: TrackingData, logs, seconds):
    tracker.cpu()
    lmk_t, _ = tracker.predict(dm.batch)
    lmk = lmk_t.double().numpy()
    rmse = landmark_rmse_px(lmk[:, :68], data.lmk_px, data.lmk_w)
    if lmk.shape[1] == 70:
        iris = mean_point_error_px(lmk[:, 68:70], data.iris_px, data.iris_w)
    else:
        iris = np.full(data.n_frames, np.nan, np.float32)
    return FitOutput(
        params=tracker.params.export(),
        K_orig=tracker.params.K_orig().double().numpy(),
        lmk_px=lmk.astype(np.float32),
        lmk_rmse_px=rmse,
        iris_err_px=iris,
        lmk_accel_px=lmk_accel_px(lmk[:, :68]),
        phases=logs,
        seconds=seconds,
    )


def crop_K(data: TrackingData, K_orig: np.ndarray) -> np.ndarray:
    """Crop-pixel intrinsics: one ``(3, 3)`` for a static crop, ``(T, 3, 3)`` when it moves."""
    return shared_or_per_frame(data.orig_to_crop @ K_orig)


def tracking_arrays(out: FitOutput, data: TrackingData, model: str) -> dict[str, np.ndarray]:
    """The flame/tracking.npz arrays of a fit (`prep.models.flame_tracking`)."""
    rmse = np.where(data.valid, out.lmk_rmse_px, np.nan)
    w2c = np.repeat(w2c_flame()[None], data.n_frames, 0)
    K = crop_K(data, out.K_orig)
    crop_to_orig = np.linalg.inv(data.orig_to_crop)
    return flame_tracking.tracking_arrays(
        data.frame_names, data.valid, rmse, out.params, w2c, K, data.image_size, crop_to_orig, model
    )
