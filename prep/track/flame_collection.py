"""Fitting FLAME to a photo collection: no temporal terms, one identity per image by default.

A folder of unrelated photos (`prep.datasets.sequence`) is not a sequence: nothing may pass from
one image to the next. So the tracker's temporal smoothness weights are zeroed, invalid images
are never bridged from their neighbours (they keep a neutral placeholder and ``valid=False``),
and each image is fitted on its own, with its own shape and (when fx is not given) its own
focal length. With ``dataset.same_person=true`` the valid images are fitted together instead:
one shared shape and focal, still without temporal smoothness, so the result does not depend on
the images' order.

The canonical tracking arrays then hold ``shape (T, n_shape)`` (one row per image; zeros for
images without a face) and per-image intrinsics ``K (T, 3, 3)``; with same_person, ``shape
(n_shape,)`` as for a video.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from prep.config.core import TrainerConfig
from prep.config.flame import TrackerConfig
from prep.errors import NoUsableFramesError
from prep.models.flame import FlameModel
from prep.track.flame_data import TrackingData
from prep.track.flame_fit import Camera, FitOutput, fit_sequence
from prep.track.flame_params import InitValues
from prep.track.flame_tracker import PhaseLog
from prep.track.metrics import nanmean

SMOOTHNESS = ("smooth_pose", "smooth_expr", "smooth_transl", "smooth_eyes")


def without_smoothness(tc: TrackerConfig) -> TrackerConfig:
    """`tc` with every temporal smoothness weight at 0."""
    return dataclasses.replace(tc, w=dataclasses.replace(tc.w, **dict.fromkeys(SMOOTHNESS, 0.0)))


class CollectionFit(FitOutput):
    """`FitOutput` of a collection: ``K_orig`` is (T, 3, 3) and ``shape`` may be per image."""

    def summary(self) -> dict[str, float]:
        return {
            "lmk_rmse_px": nanmean(self.lmk_rmse_px),
            "iris_err_px": nanmean(self.iris_err_px),
            "lmk_accel_px": float("nan"),  # no time axis in a collection
            "focal_px": float(np.median(self.K_orig[:, 0, 0])),
            "fit_seconds": self.seconds,
        }


def _subset(init: InitValues | None, idx: np.ndarray, T: int) -> InitValues | None:
    """Per-frame fields of `init` at frames `idx` (shape and shared values kept)."""
    if init is None:
        return None
    out = {}
    for f in dataclasses.fields(init):
        a = getattr(init, f.name)
        per_frame = a is not None and f.name != "shape" and np.ndim(a) >= 1 and len(a) == T
        out[f.name] = np.asarray(a)[idx] if per_frame else a
    return InitValues(**out)


def _phase_totals(logs: list[list[PhaseLog]]) -> list[PhaseLog]:
    """One log per phase name over all fits: iterations and seconds summed, terms averaged."""
    out: dict[str, PhaseLog] = {}
    for fit_logs in logs:
        for p in fit_logs:
            acc = out.setdefault(p.name, PhaseLog(p.name, 0, 0.0, {}))
            acc.iters += p.iters
            acc.seconds += p.seconds
            for k, v in p.terms.items():
                acc.terms[k] = acc.terms.get(k, 0.0) + v / len(logs)
    return list(out.values())


def fit_collection(
    flame: FlameModel,
    data: TrackingData,
    camera: Camera,
    cfg: TrackerConfig,
    same_person: bool,
    init: InitValues | None = None,
    fixed_shape: np.ndarray | None = None,
    device: str = "cpu",
    on_phase_end: Callable[[PhaseLog], None] | None = None,
    trainer: TrainerConfig | None = None,
    logger=None,
) -> CollectionFit:
    """Fit the valid images of a collection (see the module docstring).

    Args:
        flame, data, camera, init, fixed_shape, device, on_phase_end, trainer, logger: as for
            `fit_sequence` (each image's fit logs its steps to `logger` in turn).
        cfg: tracker config; its smoothness weights are ignored (zeroed).
        same_person: fit one shared identity to all valid images.
    """
    t0 = time.perf_counter()
    T = data.n_frames
    ok = np.flatnonzero(data.valid)
    if not len(ok):
        raise NoUsableFramesError("no image of the collection has usable landmarks")
    cfg = without_smoothness(cfg)
    groups = [ok] if same_person else [ok[k : k + 1] for k in range(len(ok))]
    fits = [
        fit_sequence(
            flame,
            data.subset(g),
            camera,
            cfg,
            _subset(init, g, T),
            fixed_shape,
            device,
            on_phase_end if same_person else None,
            trainer,
            logger,
        )
        for g in groups
    ]
    return _scatter(fits, groups, data, same_person, time.perf_counter() - t0)


def _scatter(
    fits: list[FitOutput], groups: list[np.ndarray], data: TrackingData, shared: bool, seconds
) -> CollectionFit:
    """Per-image results at their frames; images without a face get a neutral placeholder."""
    T = data.n_frames
    params: dict[str, np.ndarray] = {}
    for name, first in fits[0].params.items():
        if name == "shape" and shared:
            params[name] = first
        else:  # per-image shape (n_shape,) and per-frame (1, d) rows alike become (T, ...)
            tail = first.shape if name == "shape" else first.shape[1:]
            params[name] = np.zeros((T, *tail), first.dtype)
    K = np.repeat(np.median([f.K_orig for f in fits], axis=0)[None], T, 0)
    lmk = np.full((T, *fits[0].lmk_px.shape[1:]), np.nan, np.float32)
    rmse, iris = np.full(T, np.nan, np.float32), np.full(T, np.nan, np.float32)
    for fit, g in zip(fits, groups, strict=True):
        for name, a in fit.params.items():
            if not (name == "shape" and shared):
                params[name][g] = a
        K[g], lmk[g] = fit.K_orig, fit.lmk_px
        rmse[g], iris[g] = fit.lmk_rmse_px, fit.iris_err_px
    ok = data.valid
    params["transl"][~ok] = np.median(params["transl"][ok], axis=0)  # in front of the camera
    return CollectionFit(
        params=params,
        K_orig=K,
        lmk_px=lmk,
        lmk_rmse_px=rmse,
        iris_err_px=iris,
        lmk_accel_px=np.full(T, np.nan, np.float32),
        phases=_phase_totals([f.phases for f in fits]),
        seconds=seconds,
    )
