"""Stage fit_3dmm_coarse: per-frame Deep3DFaceRecon-style 3DMM coefficients (PIRenderer layout).

Reads landmarks/landmarks.npz (68 points in face-frame pixels) and, for the deep3dface backend,
the face frames; writes bfm/coarse.npz (T frames):

    frame_names (T,) str
    coeff (T, 257) float32        id 0:80, exp 80:144, tex 144:224, angles 224:227,
                                  gamma 227:254, trans 254:257 (Deep3DFaceRecon, front BFM)
    trans_params (T, 5) float32   alignment [w0, h0, s, t0, t1] (PIRenderer's crop parameters;
                                  the LMDB keeps [s, t0, t1])
    valid (T,) bool               fitted from a detected face; invalid frames are interpolated
    lmk_rmse_px (T,) float32      landmark RMSE in aligned 224 pixels (NaN where invalid)
    image_hw (2,) int, backend str

Backends: ``landmarks`` (no weights: fits the 68 landmarks, texture/light zero) and
``deep3dface`` (the published ResNet-50 regressor, asset ``deep3dface``).
"""

from __future__ import annotations

import logging

import numpy as np

from prep.config.backends import instantiate
from prep.config.bfm import Deep3dfaceCoarseConfig, LandmarksCoarseConfig
from prep.io.files import read_image, save_npz
from prep.models.bfm import N_COEFF, BfmModel
from prep.pipeline import StageContext, StageResult, register_stage
from prep.track.bfm_align import aligned_from_source, apply_affine, pos_align
from prep.track.bfm_coarse import fit_landmarks
from prep.track.bfm_inputs import front_assets, interpolate_invalid, load_front_bfm, read_landmarks
from prep.vision.deep3dface import alignment_points

log = logging.getLogger(__name__)


class LandmarksCoarseFit:
    """fit_3dmm_coarse=landmarks: coefficients fitted to the 68 landmarks (`LandmarksCoarseConfig`).

    Every coarse backend is built as ``cls(settings, ctx)``; ``fit(model, lm, trans_params)``
    returns (coeff (T, 257), landmark RMSE in aligned pixels (T,)).
    """

    def __init__(self, settings: LandmarksCoarseConfig, ctx: StageContext):
        self.settings, self.cfg = settings, ctx.cfg.fit_3dmm_coarse

    def fit(self, model: BfmModel, lm: dict, tp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.cfg
        lmk_al = apply_affine(aligned_from_source(tp, s.target_size), lm["points_px"])
        fit = fit_landmarks(model, lmk_al, lm["weights"], s, self.settings)
        T = len(tp)
        coeff = np.zeros((T, N_COEFF), np.float32)
        coeff[:, 0:80], coeff[:, 80:144] = fit.id, fit.exp
        coeff[:, 224:227], coeff[:, 254:257] = fit.angles, fit.trans
        return coeff, fit.lmk_rmse_px


class Deep3dfaceCoarseFit:
    """fit_3dmm_coarse=deep3dface: the published regressor on the aligned face frames."""

    def __init__(self, settings: Deep3dfaceCoarseConfig, ctx: StageContext):
        self.settings, self.ctx = settings, ctx

    def fit(self, model: BfmModel, lm: dict, tp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from prep.vision.deep3dface import regress_frames

        ctx = self.ctx

        def frame(i: int) -> np.ndarray:
            return read_image(ctx.subject.face_frame_path(i))

        weights = ctx.asset("deep3dface")
        return regress_frames(weights, ctx.device, frame, model, lm, tp, ctx.cfg.fit_3dmm_coarse)


@register_stage(
    "fit_3dmm_coarse",
    needs=("landmarks",),
    config=("bfm", "fit_3dmm_coarse"),
    version=1,
    writes=lambda s: [s.bfm_coarse],
    assets=lambda cfg: front_assets(cfg) + cfg.fit_3dmm_coarse.backend.assets(),
)
def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg
    lm = read_landmarks(ctx.subject, cfg.fit_3dmm_coarse.min_score)
    valid = lm["valid"]
    model = load_front_bfm(cfg, ctx.asset)
    h0, w0 = (int(v) for v in lm["image_hw"])
    lm3d_5 = alignment_points(cfg, model.mean_shape[model.keypoints].cpu().numpy())
    tp = pos_align(lm["points_px"], (h0, w0), lm3d_5, cfg.fit_3dmm_coarse.rescale_factor)
    tp[~valid] = interpolate_invalid(tp, valid)[~valid]
    coeff, rmse = instantiate(cfg.fit_3dmm_coarse.backend, ctx).fit(model, lm, tp)
    rmse = np.where(valid, rmse, np.nan).astype(np.float32)
    coeff = interpolate_invalid(coeff, valid)
    save_npz(
        ctx.subject.bfm_coarse,
        frame_names=lm["frame_names"],
        coeff=coeff.astype(np.float32),
        trans_params=tp.astype(np.float32),
        valid=valid,
        lmk_rmse_px=rmse,
        image_hw=np.array([h0, w0]),
        backend=np.array(cfg.fit_3dmm_coarse.backend.name),
    )
    metrics = {
        "lmk_rmse_px": float(np.nanmean(rmse)) if np.isfinite(rmse).any() else float("nan"),
        "lmk_rmse_px_p95": float(np.nanpercentile(rmse, 95)) if np.isfinite(rmse).any() else 0.0,
        "valid_fraction": float(valid.mean()),
    }
    if ctx.logger is not None:
        ctx.logger.log_metrics({f"coarse/{k}": v for k, v in metrics.items()})
    return StageResult(
        n_frames=len(valid), n_flagged=int((~valid).sum()), metrics=metrics, headline="lmk_rmse_px"
    )
