"""What both 3DMM stages read: the front BFM (built once from BFM2009 when only that is present),
the landmarks with per-point weights, and gap filling over invalid frames."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from prep.assets import asset_path
from prep.config import Config
from prep.errors import MissingInputError, NoUsableFramesError
from prep.io.files import load_npz
from prep.models.bfm import BfmModel
from prep.models.bfm_io import build_front_model, load_bfm, write_front_mat
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


def front_assets(cfg: Config) -> list[str]:
    """BFM assets needed: the front model, or the BFM2009 files it can be built from.

    With neither present the front model is what is asked for (one file, the usual download).
    """
    front_missing = not asset_path(cfg, "bfm_front").is_file()
    if cfg.bfm.build_front and front_missing and asset_path(cfg, "bfm_2009").is_file():
        return ["bfm_2009", "bfm_exp_pca"]
    return ["bfm_front"]


def load_front_bfm(cfg: Config, asset: Callable[[str], Path]) -> BfmModel:
    """The front BFM, built once from BFM2009 + Exp_Pca.bin when only those are present.

    Args:
        asset: resolves an asset name to its checked path (the stage's ``ctx.asset``).
    """
    front = asset_path(cfg, "bfm_front")
    if cfg.bfm.build_front and not front.is_file():
        log.info("building %s from BFM2009 (once)", front)
        content = build_front_model(asset("bfm_2009"), asset("bfm_exp_pca"))
        write_front_mat(front, content)
    return BfmModel(load_bfm("front", asset("bfm_front")))


def read_landmarks(subject: SubjectDir, min_score: float) -> dict[str, np.ndarray]:
    """landmarks.npz with `weights` (T, 68): point scores on valid frames, 0 elsewhere.

    A frame is valid when its face was detected, its points are finite and their mean score is
    at least `min_score` (``fit_3dmm_coarse.min_score``).
    """
    path = subject.landmarks_npz
    if not path.exists():
        raise MissingInputError("landmarks", path)
    lm = load_npz(path)
    pts = lm["points_px"].astype(np.float64)
    valid = lm["valid"].astype(bool) & np.isfinite(pts).all(axis=(1, 2))
    scores = lm.get("scores", np.ones(pts.shape[:2], np.float32)).astype(np.float64)
    valid &= scores.mean(1) >= min_score
    if not valid.any():
        raise NoUsableFramesError(f"{path}: no frame has usable landmarks for the 3DMM fit")
    lm["points_px"], lm["valid"] = np.where(np.isfinite(pts), pts, 0.0), valid
    lm["weights"] = np.where(valid[:, None], np.clip(scores, 0, 1), 0.0)
    return lm


def interpolate_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill rows of (T, ...) `values` where not `valid` by linear interpolation over frames."""
    t = np.arange(len(values))
    flat = values.reshape(len(values), -1)
    out = np.stack([np.interp(t, t[valid], col[valid]) for col in flat.T], 1)
    return out.reshape(values.shape).astype(values.dtype)
