"""Stage fit_3dmm_fine: one BFM fit per video (AD-NeRF / OTAvatar), written to bfm/fine.npz.

Reads landmarks/landmarks.npz, bfm/coarse.npz (initial head rotation) and the face frames
(photometric phase). Writes bfm/fine.npz (T frames, crop pixels, AD-NeRF conventions):

    frame_names (T,) str
    id (1, n_id), tex (1, n_tex)       shared identity and texture (unit-variance coefficients)
    exp (T, n_exp)                     expression
    euler (T, 3), trans (T, 3)         AD-NeRF pose: R = Rx Ry Rz(-e2), camera looking down -z
    gamma (T, 27)                      SH light (Deep3DFaceRecon basis, colour-major)
    focal () float                     pixels of the crop image; principal point at its centre
    image_size (2,) int                (h, w) of the crop
    w2c (T, 4, 4), K (3, 3)            the same camera in our OpenCV convention (crop pixels)
    valid (T,) bool, lmk_rmse_px (T,)  landmark RMSE in crop pixels (NaN where invalid)
    focal_search (K, 2)                [focal crop px, landmark rmse crop px] per candidate
    variant str                        front | adnerf

plus overlays/fit_3dmm_fine/fit.mp4 (detected landmarks green, fitted red).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from prep.errors import BadConfigError, MissingInputError
from prep.io.files import load_npz, read_image, save_npz
from prep.models.bfm import BfmModel, adnerf_w2c, deep3d_rotation
from prep.models.bfm_io import load_bfm
from prep.models.camera import make_K
from prep.models.rotations import matrix_to_euler_angles
from prep.pipeline import StageContext, StageResult, register_stage
from prep.track.bfm_coarse import torch_threads
from prep.track.bfm_fine import FrameImages, fit_video
from prep.track.bfm_inputs import front_assets, load_front_bfm, read_landmarks

log = logging.getLogger(__name__)


def _assets(cfg) -> list[str]:
    if cfg.bfm.variant == "adnerf":
        return ["bfm_adnerf"]
    return front_assets(cfg)


def _model(ctx: StageContext) -> BfmModel:
    if ctx.cfg.bfm.variant == "adnerf":
        return BfmModel(load_bfm("adnerf", ctx.asset("bfm_adnerf"), ctx.asset("bfm_adnerf")))
    return load_front_bfm(ctx.cfg, ctx.asset)


def coarse_euler(path) -> np.ndarray | None:
    """AD-NeRF Euler angles (T, 3) of the coarse fit's rotations, or None without a coarse fit."""
    if not path.exists():
        return None
    angles = torch.as_tensor(load_npz(path)["coeff"][:, 224:227], dtype=torch.float64)
    e = matrix_to_euler_angles(deep3d_rotation(angles), "XYZ")
    return (e * e.new_tensor([1.0, 1.0, -1.0])).numpy().astype(np.float32)


def _to_fit_px(pts: np.ndarray, scale: float) -> np.ndarray:
    # pixel centres at integers: a pixel's centre x maps to (x + 0.5) * scale - 0.5
    return (pts + 0.5) * scale - 0.5


@register_stage(
    "fit_3dmm_fine",
    needs=("fit_3dmm_coarse",),
    config=("bfm", "fit_3dmm_fine", "trainer"),
    version=1,
    writes=lambda s: [s.bfm_fine],
    assets=_assets,
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg, ctx.subject
    started = time.time()
    lm = read_landmarks(subject, cfg.fit_3dmm_coarse.min_score)
    valid = lm["valid"]
    h, w = (int(v) for v in lm["image_hw"])
    if h != w:
        raise BadConfigError(f"fit_3dmm_fine needs square face frames, got {h}x{w}")
    s = cfg.fit_3dmm_fine
    scale = s.size / w
    model = _model(ctx)
    if not subject.bfm_coarse.exists():
        raise MissingInputError("fit_3dmm_coarse", subject.bfm_coarse)
    # the coarse rotations (front model) start the fine fit; AD-NeRF's model starts frontal
    euler0 = coarse_euler(subject.bfm_coarse) if model.variant == "front" else None
    f = cfg.fit_3dmm_fine
    images = None
    if f.photo_epochs > 0:
        ids = np.flatnonzero(valid)
        images = FrameImages(ids, lambda i: read_image(subject.face_frame_path(i)), s.size)
    with torch_threads(1):
        res = fit_video(
            model,
            _to_fit_px(lm["points_px"], scale),
            lm["weights"],
            s,
            f.focal_mode,
            f.focal * scale,
            [c * scale for c in f.focal_search],
            f.focal_search_frames,
            images,
            euler0,
            ctx.cfg.trainer,
        )
    focal_crop = res.focal / scale
    rmse = np.where(valid, res.lmk_rmse_px / scale, np.nan).astype(np.float32)
    K = make_K(focal_crop, focal_crop, (w - 1) / 2, (h - 1) / 2).numpy()
    w2c = adnerf_w2c(torch.from_numpy(res.euler), torch.from_numpy(res.trans)).numpy()
    search = (
        res.focal_losses * [1 / scale, 1 / scale] if len(res.focal_losses) else np.zeros((0, 2))
    )
    save_npz(
        subject.bfm_fine,
        frame_names=lm["frame_names"],
        id=res.id,
        tex=res.tex,
        exp=res.exp,
        euler=res.euler,
        trans=res.trans,
        gamma=res.gamma,
        focal=np.float64(focal_crop),
        image_size=np.array([h, w]),
        w2c=w2c,
        K=K,
        valid=valid,
        lmk_rmse_px=rmse,
        focal_search=search,
        variant=np.array(model.variant),
    )
    elapsed = time.time() - started
    if f.overlay:
        _write_overlay(ctx, lm, model, res, scale)
    metrics = _metrics(res, rmse, valid, focal_crop, elapsed)
    _log(ctx, res, metrics)
    return StageResult(
        n_frames=len(valid), n_flagged=int((~valid).sum()), metrics=metrics, headline="lmk_rmse_px"
    )


def _metrics(res, rmse, valid, focal_crop: float, elapsed: float) -> dict[str, float]:
    accel = np.linalg.norm(np.diff(res.euler[valid], 2, axis=0), axis=1) if valid.sum() > 2 else [0]
    return {
        "lmk_rmse_px": float(np.nanmean(rmse)),
        "lmk_rmse_px_p95": float(np.nanpercentile(rmse, 95)),
        "focal_px": float(focal_crop),
        "euler_accel_deg": float(np.degrees(np.mean(accel))),
        "sec_per_1000_frames": float(elapsed / max(len(valid), 1) * 1000),
    }


def _log(ctx: StageContext, res, metrics: dict[str, float]) -> None:
    if ctx.logger is None:
        return
    for step, row in enumerate(res.history):
        ctx.logger.log_metrics({f"fine/{k}": v for k, v in row.items() if k != "phase"}, step=step)
    if len(res.focal_losses):
        ctx.logger.log_table(
            "fine/focal_search", ["focal_fit_px", "lmk_rmse_fit_px"], res.focal_losses.tolist()
        )
    ctx.logger.log_metrics({f"fine/{k}": v for k, v in metrics.items()})


def _write_overlay(ctx: StageContext, lm: dict, model: BfmModel, res, scale: float) -> None:
    import cv2

    from prep.io.video_writer import write_video
    from prep.report.overlay import RED, draw_landmarks68

    size = ctx.cfg.fit_3dmm_fine.overlay_size
    kp = model.subset(model.keypoints)
    c = (ctx.cfg.fit_3dmm_fine.size - 1) / 2
    K = make_K(res.focal, res.focal, c, c)

    def frames():
        for i in range(len(lm["valid"])):
            img = cv2.resize(
                read_image(ctx.subject.face_frame_path(i)),
                (size, size),
                interpolation=cv2.INTER_AREA,
            )
            r = size / ctx.cfg.fit_3dmm_fine.size
            with torch.no_grad():
                from prep.models.camera import project

                xy, _ = project(
                    kp(torch.from_numpy(res.id), torch.from_numpy(res.exp[i : i + 1])),
                    K,
                    adnerf_w2c(
                        torch.from_numpy(res.euler[i : i + 1]),
                        torch.from_numpy(res.trans[i : i + 1]),
                    ),
                )
            fitted = (xy[0].numpy() + 0.5) * r - 0.5
            if lm["valid"][i]:
                img = draw_landmarks68(
                    img, (lm["points_px"][i] + 0.5) * size / lm["image_hw"][1] - 0.5
                )
            yield draw_landmarks68(img, fitted, RED)

    path = ctx.subject.overlay_dir("fit_3dmm_fine") / "fit.mp4"
    ctx.subject.ensure(path.parent)
    write_video(path, frames(), fps=ctx.subject.video_fps())
    if ctx.logger is not None:
        ctx.logger.log_video("fine/overlay", path)
