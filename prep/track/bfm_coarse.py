"""Coarse per-frame 3DMM fit to 68 landmarks, in Deep3DFaceRecon's aligned 224x224 frame.

The result has exactly the semantics of Deep3DFaceRecon's per-image regression (which PIRenderer
and OTAvatar consume): identity, expression, angles and translation of the front BFM seen by its
camera (focal 1015, centre 112, camera at z = 10) in the image aligned by `prep.track.bfm_align`.
Texture and SH light are not observable from landmarks and stay zero (the ambient default light).

Every frame is independent; frames are optimised together in batches (one tensor per parameter,
indexed by frame), first pose only, then pose, identity and expression, with Adam on the
score-weighted squared pixel error plus Gaussian priors on the unit-variance coefficients.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from prep.config.bfm import CoarseConfig, LandmarksCoarseConfig
from prep.models.bfm import BfmModel, SubsetShape, deep3d_K, deep3d_w2c
from prep.models.camera import project
from prep.progress import progress

log = logging.getLogger(__name__)


@dataclass
class CoarseFit:
    """Per-frame fit, arrays over T frames.

    Attributes:
        id: (T, n_id), exp: (T, n_exp), angles: (T, 3) radians, trans: (T, 3) model units.
        lmk_rmse_px: (T,) landmark RMSE in aligned (224) pixels.
    """

    id: np.ndarray
    exp: np.ndarray
    angles: np.ndarray
    trans: np.ndarray
    lmk_rmse_px: np.ndarray


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` intra-op threads.

    The landmark fits are many tiny ops; on a busy 2-core machine, two threads spend most of
    their time waiting for each other (measured 30x slower than one), so fits use one thread.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def project_keypoints(kp: SubsetShape, id_c, exp_c, angles, trans, s: CoarseConfig) -> torch.Tensor:
    """(B, 68, 2) landmarks in aligned pixels (OpenCV rows) for Deep3DFaceRecon parameters.

    Args:
        kp: ``model.subset(model.keypoints)``.
    """
    K = deep3d_K(s.focal, s.target_size / 2, s.target_size).to(angles)
    w2c = deep3d_w2c(angles, trans, s.camera_distance)
    xy, _ = project(kp(id_c, exp_c), K, w2c)
    return xy


def _fit_batch(
    kp: SubsetShape, lmk: torch.Tensor, w: torch.Tensor, s: CoarseConfig, o: LandmarksCoarseConfig
):
    B = lmk.shape[0]
    params = {
        "id": torch.zeros(B, kp.id_t.shape[0], requires_grad=True),
        "exp": torch.zeros(B, kp.exp_t.shape[0], requires_grad=True),
        "angles": torch.zeros(B, 3, requires_grad=True),
        "trans": torch.zeros(B, 3, requires_grad=True),
    }
    wsum = w.sum(1).clamp(min=1e-6)

    def data_term() -> torch.Tensor:
        xy = project_keypoints(
            kp, params["id"], params["exp"], params["angles"], params["trans"], s
        )
        return ((xy - lmk).pow(2).sum(-1) * w).sum(1) / wsum  # (B,) mean squared px

    for phase, names, iters in (
        ("rigid", ("angles", "trans"), o.iters_rigid),
        ("full", tuple(params), o.iters),
    ):
        opt = torch.optim.Adam([params[n] for n in names], lr=o.lr)
        for _ in range(iters):
            opt.zero_grad()
            loss = data_term()
            if phase == "full":
                loss = (
                    loss
                    + o.w_id * params["id"].pow(2).sum(1)
                    + o.w_exp * params["exp"].pow(2).sum(1)
                )
            loss.sum().backward()  # frames are independent: summing keeps per-frame gradients
            opt.step()
    with torch.no_grad():
        rmse = data_term().sqrt()
    return {k: v.detach() for k, v in params.items()}, rmse


def fit_landmarks(
    model: BfmModel,
    lmk_al_px: np.ndarray,
    weights: np.ndarray,
    s: CoarseConfig,
    o: LandmarksCoarseConfig,
) -> CoarseFit:
    """Fit every frame's coefficients to its aligned landmarks.

    Args:
        model: front BFM.
        lmk_al_px: (T, 68, 2) landmarks in aligned pixels (OpenCV rows).
        weights: (T, 68) per-point confidence in [0, 1].
        s: the stage's settings (the aligned camera).
        o: the optimisation's settings.
    """
    T = len(lmk_al_px)
    out: dict[str, list[torch.Tensor]] = {
        "id": [],
        "exp": [],
        "angles": [],
        "trans": [],
        "rmse": [],
    }
    kp = model.subset(model.keypoints)
    starts = range(0, T, o.batch)
    for i0 in progress(starts, total=len(starts), desc="3dmm coarse"):
        i1 = min(i0 + o.batch, T)
        lmk = torch.as_tensor(lmk_al_px[i0:i1], dtype=torch.float32)
        w = torch.as_tensor(weights[i0:i1], dtype=torch.float32)
        with torch_threads(1):
            params, rmse = _fit_batch(kp, lmk, w, s, o)
        for k in ("id", "exp", "angles", "trans"):
            out[k].append(params[k])
        out["rmse"].append(rmse)
    cat = {k: torch.cat(v).numpy() for k, v in out.items()}
    return CoarseFit(cat["id"], cat["exp"], cat["angles"], cat["trans"], cat["rmse"])
