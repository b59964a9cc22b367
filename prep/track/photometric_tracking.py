"""The fit_flame stage's side of the photometric phase: tracking.npz arrays in and out.

`frame_loader` reads the subject's crop frames and face regions (parsing labels, matte) per
window; `refine_tracking` runs `photometric.refine_photometric` on the canonical tracking arrays
and returns a refined copy with the per-frame landmark error recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prep.config.render import PhotometricConfig
from prep.models.flame import FlameModel
from prep.track.photometric import (
    FRAME_KEYS,
    FrameLoader,
    PhotometricProblem,
    PhotometricRenderer,
    frames_K,
    refine_photometric,
)


def frame_loader(
    frame_path: Callable[[int], Path],
    parsing_path: Callable[[int], Path] | None,
    mask_path: Callable[[int], Path] | None,
    region_labels: list[int],
    inframe: Callable[[int], np.ndarray | None] | None = None,
) -> FrameLoader:
    """Read frames (sRGB in [0,1]) and their face regions from the subject's files, resized.

    Without parsing labels the whole (masked) frame counts as the region. Pixels outside the
    original frame (``inframe(i)`` False: the crop's padding) never count.
    """
    import cv2

    from prep.io.files import read_image

    def load(frames: list[int], hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        rgbs, regions = [], []
        for i in frames:
            rgb = read_image(frame_path(i), "rgb")
            region = np.ones(rgb.shape[:2], bool)
            lp = parsing_path(i) if parsing_path is not None else None
            if lp is not None and lp.exists():
                region = np.isin(read_image(lp, "gray"), np.asarray(region_labels))
            mp = mask_path(i) if mask_path is not None else None
            if mp is not None and mp.exists():
                region &= read_image(mp, "gray") > 127
            inside = inframe(i) if inframe is not None else None
            if inside is not None:
                region &= inside
            if rgb.shape[:2] != tuple(hw):
                rgb = cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
                region = cv2.resize(
                    region.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST
                ).astype(bool)
            rgbs.append(rgb)
            regions.append(region)
        rgb_t = torch.from_numpy(np.stack(rgbs)).float() / 255.0
        return rgb_t, torch.from_numpy(np.stack(regions))

    return load


def refine_tracking(
    flame: FlameModel,
    track: dict[str, np.ndarray],
    lmk_px: np.ndarray,
    lmk_w: np.ndarray,
    load_frames: FrameLoader,
    cfg: PhotometricConfig,
    lmk_weight: float = 1.0,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Photometric refinement of canonical tracking arrays (flame/tracking.npz layout).

    Args:
        flame: the FLAME layer of the landmark fit (its embedding gives the landmarks).
        track: canonical tracking arrays (`prep.models.flame_tracking.tracking_arrays`); not
            modified.
        lmk_px: (T,68,2) landmark targets in crop pixels; lmk_w: (T,68) their weights.
        load_frames: see `frame_loader`.
        cfg: the photometric settings (fit_flame.photo).
        lmk_weight: the tracker's landmark weight.

    Returns:
        (refined copy of `track`, metrics).
    """
    dt = flame.v_template.dtype

    def t(a) -> Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dt)

    def load(frames: list[int], hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        rgb, region = load_frames(frames, hw)
        return rgb.to(dt), region

    params = {k: t(track[k]) for k in (*FRAME_KEYS, "shape", "eyelids")}
    prob = PhotometricProblem(
        params=params,
        w2c=t(track["w2c"]),
        K=t(track["K"]),
        image_size=(int(track["image_size"][0]), int(track["image_size"][1])),
        lmk_px=t(lmk_px),
        lmk_w=t(lmk_w),
        valid=torch.as_tensor(np.asarray(track["valid"], bool)),
        load_frames=load,
        lmk_weight=lmk_weight,
    )
    res = refine_photometric(flame, prob, cfg)
    out = dict(track)
    for k in FRAME_KEYS + ("eyelids",):
        out[k] = res.params[k].numpy().astype(np.asarray(track[k]).dtype)
    if "lmk_rmse_px" in track:  # keep the per-frame landmark error in step with the parameters
        out["lmk_rmse_px"] = _lmk_rmse(flame, res.params, prob, lmk_px, lmk_w)
    return out, res.metrics


@torch.no_grad()
def _lmk_rmse(flame, params, prob: PhotometricProblem, lmk_px, lmk_w, chunk: int = 64):
    """(T,) float32 RMSE over the weighted points (NaN on invalid frames), like the tracker's."""
    r = PhotometricRenderer(flame, prob)
    T = len(prob.valid)
    out = np.full(T, np.nan, np.float32)
    for i0 in range(0, T, chunk):
        idx = torch.arange(i0, min(i0 + chunk, T))
        p = {k: (v if k == "shape" else v[idx]) for k, v in params.items()}
        world = r.world(p)
        pred_t = r.landmarks_px(p, idx, frames_K(prob.K, idx), world)[:, : lmk_px.shape[1]]
        pred = pred_t.double().numpy()
        m = np.asarray(lmk_w)[i0 : i0 + len(idx)] > 0
        sq = ((pred - np.asarray(lmk_px)[i0 : i0 + len(idx)]) ** 2).sum(-1)
        n = m.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i0 : i0 + len(idx)] = np.where(n > 0, np.sqrt((sq * m).sum(1) / n), np.nan)
    return np.where(prob.valid.numpy(), out, np.nan).astype(np.float32)
