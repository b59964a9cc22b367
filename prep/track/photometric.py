"""Photometric refinement of a FLAME fit: a phase after the landmark fit (fit_flame.photometric).

Camera convention: OpenCV (x right, y down, z forward); `K` in crop pixels, pixel centres at
integers; ``x_cam = w2c @ (FLAME vertices + transl)``.

Model of a frame: ``image = albedo(vertex colour) * SH irradiance(camera-space normal)`` inside the
face-parsing region (skin, brows, nose, mouth, lips by default). Per-frame parameters (expression,
jaw/neck/global pose, translation) are refined so the render matches the frame, while the
landmark term of the landmark fit stays in the loss (so landmark accuracy does not degrade).
Shared parameters: per-vertex albedo (Laplacian-smooth) and SH lighting (per subject, or per frame
with `sh_per_frame`).

Schedule: albedo and light are initialised in closed form from a few key frames (vertex colours
sampled where visible, then a least-squares SH fit); the sequence is then processed in windows of
`batch_frames` frames, each optimised coarse-to-fine over `sizes` with `steps` Adam steps per size.
Shared parameters keep their optimiser state across windows. Frames are read per window, so memory
does not grow with the sequence length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from prep.config.render import PhotometricConfig, PhotoParam
from prep.models.camera import rescale_intrinsics
from prep.models.flame import FlameModel
from prep.models.flame_tracking import HEAD_ROTATIONS, POSE_PARAMS, evaluate
from prep.progress import progress
from prep.render import (
    camera_to_pixels,
    fit_sh,
    interpolate,
    interpolate_sparse,
    rasterize,
    sh_basis,
    sh_irradiance,
    vertex_normals,
    world_to_camera,
)
from prep.render.silhouette import mesh_edges

log = logging.getLogger(__name__)

FRAME_KEYS = ("expr", *POSE_PARAMS, "transl")
SMOOTHED = (*HEAD_ROTATIONS, "transl")  # kept smooth across windows
# Adam moves every parameter by about lr per step whatever its units: scale the step to each
# parameter's natural size (expression units, radians, metres).
LR_SCALE = {
    "expr": 1.0,
    "eyelids": 1.0,
    "global_pose": 0.2,
    "neck_pose": 0.2,
    "jaw_pose": 0.2,
    "eyes_pose": 0.2,
    "transl": 0.04,
}

# load_frames(frame indices, (h, w)) -> (rgb (B,h,w,3) float in [0,1], region (B,h,w) bool)
FrameLoader = Callable[[list[int], tuple[int, int]], tuple[Tensor, Tensor]]


@dataclass
class PhotometricProblem:
    """Everything the refinement reads.

    Attributes:
        params: per-frame FLAME parameters (T, ...) from the landmark fit, keys of FRAME_KEYS
            (transl (T,3)), plus "shape" (n_shape,) and optionally "eyelids" (T,2).
        w2c: (T,4,4) world-to-camera. K: (3,3) crop intrinsics at `image_size` (h, w).
        lmk_px: (T,L,2) landmark targets in crop pixels; lmk_w: (T,L) confidences (0 = ignore).
        valid: (T,) frames to refine (others are left untouched).
        load_frames: reads frames and their face regions at a given size.
        lmk_weight: weight of the landmark term in the landmark fit (the phase multiplies it).
    """

    params: dict[str, Tensor]
    w2c: Tensor
    K: Tensor
    image_size: tuple[int, int]
    lmk_px: Tensor
    lmk_w: Tensor
    valid: Tensor
    load_frames: FrameLoader
    lmk_weight: float = 1.0


@dataclass
class PhotometricResult:
    """Refined parameters (same keys and shapes as the input), albedo, light and metrics."""

    params: dict[str, Tensor]
    albedo: Tensor  # (V,3) per-vertex albedo in [0,1]
    sh: Tensor  # (9,3) or (T,9,3)
    metrics: dict[str, float] = field(default_factory=dict)


def frames_K(K: Tensor, idx: Tensor, from_hw=None, to_hw=None) -> Tensor:
    """Intrinsics of frames `idx` from a shared (3,3) or per-frame (T,3,3) `K`, rescaled from
    image size `from_hw` to `to_hw` when given (pixel centres at integers)."""
    K = K if K.dim() == 2 else K[idx]
    return K if to_hw is None else rescale_intrinsics(K, from_hw, to_hw)


class PhotometricRenderer:
    """The photometric problem's FLAME, posed, projected and shaded for a window of frames.

    Gives the posed mesh (`world`), its camera-space vertices (`verts`), the landmarks in pixels
    (`landmarks_px`) and the SH-shaded colour of the covered pixels (`shade`); also the mesh edges
    the albedo smoothness term uses.

    Args:
        model: FLAME with a landmark embedding.
        prob: the problem's cameras (``w2c`` (T,4,4), OpenCV convention).
    """

    def __init__(self, model: FlameModel, prob: PhotometricProblem):
        self.model, self.prob = model, prob
        self.faces = model.faces
        edges, _ = mesh_edges(self.faces)
        self.edges = edges

    def world(self, p: dict[str, Tensor]) -> Tensor:
        """(B,V,3) posed FLAME vertices (world space, after transl)."""
        return evaluate(self.model, p).vertices

    def verts(self, p: dict[str, Tensor], idx: Tensor) -> Tensor:
        return world_to_camera(self.world(p), self.prob.w2c[idx])

    def landmarks_px(self, p: dict[str, Tensor], idx: Tensor, K: Tensor, world: Tensor) -> Tensor:
        """Landmarks (B,L,2) in pixels of `K`, read off the full posed mesh `world`."""
        lmk, _ = self.model.landmarks_from_vertices(world, p["global_pose"], p["neck_pose"])
        return camera_to_pixels(world_to_camera(lmk, self.prob.w2c[idx]), K)

    def shade(self, verts_cam: Tensor, albedo: Tensor, sh: Tensor, K: Tensor, hw):
        """Shaded colour of the covered pixels only: ((M,3) colour, (M,) flat pixel index).

        Working on the covered pixels (not dense images) keeps forward and backward cheap.
        """
        frags = rasterize(verts_cam, self.faces, K, hw)
        normals = vertex_normals(verts_cam, self.faces)
        n_pix = F.normalize(interpolate_sparse(normals, self.faces, frags), dim=-1, eps=1e-12)
        alb = interpolate_sparse(albedo, self.faces, frags)
        basis = sh_basis(n_pix)  # (M,9)
        if sh.ndim == 3:  # per-frame light
            frame = frags.pix // (hw[0] * hw[1])
            irr = (basis[:, :, None] * sh[frame]).sum(1)
        else:
            irr = basis @ sh
        return alb * irr, frags.pix


def _window_params(
    prob: PhotometricProblem, idx: Tensor, refine: list[PhotoParam]
) -> dict[str, Tensor]:
    p = {"shape": prob.params["shape"]}
    for k in (*FRAME_KEYS, "eyelids"):
        if k in prob.params:
            v = prob.params[k][idx].clone()
            p[k] = v.requires_grad_(k in refine)
    return p


def _photo_error(colour: Tensor, pix: Tensor, rgb: Tensor, region: Tensor) -> Tensor:
    """Mean L1 colour error per frame over the rendered pixels inside the region -> (B,).

    Args:
        colour: (M,3) rendered colours of the covered pixels `pix` (flat indices into B*H*W).
        rgb: (B,H,W,3) frames; region: (B,H,W) bool.
    """
    B, H, W = region.shape
    m = region.reshape(-1)[pix].to(colour.dtype)
    err = (colour - rgb.reshape(-1, 3)[pix]).abs().sum(-1) * m
    frame = pix // (H * W)
    num = torch.zeros(B, dtype=colour.dtype, device=colour.device).index_add(0, frame, err)
    den = torch.zeros(B, dtype=colour.dtype, device=colour.device).index_add(0, frame, m)
    return num / (3 * den.clamp(min=1))


def init_albedo_and_light(
    r: PhotometricRenderer,
    prob: PhotometricProblem,
    frames: list[int],
    size_hw: tuple[int, int],
    per_frame_sh: bool,
    n_frames: int,
) -> tuple[Tensor, Tensor]:
    """Closed-form start from key frames.

    Light: SH fitted to the region's pixels assuming one albedo (their mean colour). Albedo: each
    visible pixel's colour divided by that irradiance, splatted onto the triangle's vertices with
    its barycentric weights; vertices never seen get the mean.
    """
    V = r.model.n_vertices
    idx = torch.as_tensor(frames)
    K = frames_K(prob.K, idx, prob.image_size, size_hw)
    rgb, region = prob.load_frames(frames, size_hw)
    with torch.no_grad():
        vc = r.verts(_window_params(prob, idx, []), idx)
        frags = rasterize(vc, r.faces, K, size_hw)
        b, yy, xx = (frags.mask & region).nonzero(as_tuple=True)
        if len(b) < 20:
            amb = _ambient(per_frame_sh, n_frames).to(rgb.dtype)
            return torch.full((V, 3), 0.5, dtype=rgb.dtype, device=rgb.device), amb.to(rgb.device)
        normals = vertex_normals(vc, r.faces)
        n_pix = F.normalize(interpolate(normals, r.faces, frags), dim=-1)[b, yy, xx]
        col = rgb[b, yy, xx]
        mean = col.mean(0)
        sh = fit_sh(n_pix.double(), col.double(), mean.double().clamp(min=0.05)).to(rgb.dtype)
        alb_pix = (col / sh_irradiance(n_pix, sh).clamp(min=0.1)).clamp(0, 1)
        tri = r.faces[frags.tri_id[b, yy, xx]].reshape(-1)  # (3M,)
        w = frags.bary[b, yy, xx].reshape(-1)
        acc = torch.zeros(V, 3, dtype=rgb.dtype, device=rgb.device).index_add(
            0, tri, w[:, None] * alb_pix.repeat_interleave(3, 0)
        )
        wsum = torch.zeros(V, dtype=rgb.dtype, device=rgb.device).index_add(0, tri, w)
        albedo = torch.where((wsum > 1e-3)[:, None], acc / wsum.clamp(min=1e-6)[:, None], mean)
    if per_frame_sh:
        sh = sh[None].repeat(n_frames, 1, 1)
    return albedo, sh


def _ambient(per_frame: bool, n_frames: int) -> Tensor:
    sh = torch.zeros(9, 3)
    sh[0] = 1.0
    return sh[None].repeat(n_frames, 1, 1) if per_frame else sh


class _Losses:
    """The refinement objective for one window (weights from PhotometricConfig.w)."""

    def __init__(self, r: PhotometricRenderer, prob: PhotometricProblem, cfg: PhotometricConfig):
        self.r, self.prob, self.cfg = r, prob, cfg
        h, w = prob.image_size
        self.lmk_unit = 0.01 * max(h, w)  # landmark error measured in 1% of the image size

    def lmk_sq(self, p: dict[str, Tensor], idx: Tensor, world: Tensor) -> Tensor:
        """(B,) confidence-weighted mean squared landmark error in full-resolution pixels."""
        tgt, w = self.prob.lmk_px[idx], self.prob.lmk_w[idx]
        K = frames_K(self.prob.K, idx)
        pred = self.r.landmarks_px(p, idx, K, world)[:, : tgt.shape[1]]  # 68 of 70
        d2 = ((pred - tgt) ** 2).sum(-1)
        return (w * d2).sum(1) / w.sum(1).clamp(min=1e-6)

    def __call__(self, p, idx, albedo, sh, rgb, region, K, hw, prev) -> tuple[Tensor, dict]:
        W = self.cfg.w
        world = self.r.world(p)
        vc = world_to_camera(world, self.prob.w2c[idx])
        sh_w = sh[idx] if sh.ndim == 3 else sh
        colour, pix = self.r.shade(vc, albedo, sh_w, K, hw)
        photo = _photo_error(colour, pix, rgb, region).mean()
        lmk = self.lmk_sq(p, idx, world).mean() / self.lmk_unit**2
        e = self.r.edges
        smooth_alb = ((albedo[e[:, 0]] - albedo[e[:, 1]]) ** 2).sum(-1).mean()
        alb_mean = ((albedo - albedo.mean(0)) ** 2).sum(-1).mean()
        sh_reg = (sh_w[..., 1:, :] ** 2).mean()
        expr_reg = (p["expr"] ** 2).mean()
        smooth = p["expr"].new_zeros(())
        for k in SMOOTHED:
            seq = p[k] if prev is None else torch.cat([prev[k][None], p[k]])
            if len(seq) > 1:
                smooth = smooth + ((seq[1:] - seq[:-1]) ** 2).sum(-1).mean()
        lmk_w = W.lmk * self.prob.lmk_weight
        loss = (
            W.photo * photo
            + lmk_w * lmk
            + W.albedo_smooth * smooth_alb
            + W.albedo_mean * alb_mean
            + W.sh_reg * sh_reg
            + W.expr_reg * expr_reg
            + W.pose_smooth * smooth
        )
        return loss, {"photo": float(photo.detach()), "lmk": float(lmk.detach())}


def _sizes(
    cfg: PhotometricConfig, image_size: tuple[int, int]
) -> list[tuple[tuple[int, int], int]]:
    h, w = image_size
    out = []
    for size, steps in zip(cfg.sizes, cfg.steps, strict=True):
        s = min(1.0, size / max(h, w))
        out.append(((max(8, round(h * s)), max(8, round(w * s))), int(steps)))
    return out


def refine_photometric(
    model: FlameModel, prob: PhotometricProblem, cfg: PhotometricConfig
) -> PhotometricResult:
    """Refine a landmark fit photometrically (see the module docstring).

    Args:
        model: FLAME layer (with the landmark embedding the landmark fit used).
        prob: the sequence, its landmark-fit parameters and a frame loader.
        cfg: weights, schedule and which parameters to refine.

    Returns:
        PhotometricResult with refined parameters (invalid frames unchanged) and metrics
        ``photo_err_before/after`` (mean L1, colours in [0,1]) and ``lmk_rmse_px_before/after``.
    """
    T = len(prob.valid)
    finite = torch.ones(T, dtype=torch.bool)
    for k in FRAME_KEYS:  # a frame with NaN/inf parameters is left alone, never propagated
        finite &= torch.isfinite(prob.params[k].reshape(T, -1)).all(1)
    frames = (prob.valid.bool() & finite).nonzero(as_tuple=True)[0]
    r = PhotometricRenderer(model, prob)
    sched = _sizes(cfg, prob.image_size)
    refine = [k for k in cfg.refine if k in FRAME_KEYS or k == "eyelids"]
    out = {k: v.detach().clone() for k, v in prob.params.items()}
    if len(frames) == 0:
        return PhotometricResult(out, torch.full((model.n_vertices, 3), 0.5), _ambient(False, 1))
    keys = frames[torch.linspace(0, len(frames) - 1, min(8, len(frames))).round().long()]
    albedo, sh = init_albedo_and_light(r, prob, keys.tolist(), sched[-1][0], cfg.sh_per_frame, T)
    albedo.requires_grad_(True)
    sh.requires_grad_(True)
    opt_shared = torch.optim.Adam([albedo, sh], lr=cfg.lr_albedo)
    losses = _Losses(r, prob, cfg)
    stats: dict[str, list[float]] = {
        "photo_before": [],
        "photo_after": [],
        "lmk_before": [],
        "lmk_after": [],
    }
    windows = list(torch.split(frames, max(1, cfg.batch_frames)))
    for idx in progress(windows, desc="photometric"):
        p = _window_params(prob, idx, refine)
        prev = None
        if int(idx[0]) > 0:
            prev = {k: out[k][int(idx[0]) - 1] for k in SMOOTHED}
        opt = torch.optim.Adam(
            [{"params": [p[k]], "lr": cfg.lr * LR_SCALE.get(k, 1.0)} for k in refine if k in p]
        )
        _evaluate(losses, p, idx, albedo, sh, sched[-1][0], stats, "before")
        for hw, steps in sched:
            K = frames_K(prob.K, idx, prob.image_size, hw)
            rgb, region = prob.load_frames(idx.tolist(), hw)
            for _ in range(steps):
                loss, _ = losses(p, idx, albedo, sh, rgb, region, K, hw, prev)
                opt.zero_grad()
                opt_shared.zero_grad()
                loss.backward()
                opt.step()
                opt_shared.step()
                with torch.no_grad():
                    albedo.clamp_(0, 1)
        _evaluate(losses, p, idx, albedo, sh, sched[-1][0], stats, "after")
        for k in refine:
            if k in p:
                out[k][idx] = p[k].detach()
    metrics = {
        "photo_err_before": float(np.mean(stats["photo_before"])),
        "photo_err_after": float(np.mean(stats["photo_after"])),
        "lmk_rmse_px_before": float(np.sqrt(np.mean(stats["lmk_before"]))),
        "lmk_rmse_px_after": float(np.sqrt(np.mean(stats["lmk_after"]))),
    }
    log.info("photometric refinement: %s", metrics)
    return PhotometricResult(out, albedo.detach(), sh.detach(), metrics)


def _evaluate(losses: _Losses, p, idx, albedo, sh, hw, stats, when: str) -> None:
    """Per-frame photometric error (finest size) and landmark error of the window's parameters."""
    with torch.no_grad():
        K = frames_K(losses.prob.K, idx, losses.prob.image_size, hw)
        rgb, region = losses.prob.load_frames(idx.tolist(), hw)
        world = losses.r.world(p)
        vc = world_to_camera(world, losses.prob.w2c[idx])
        colour, pix = losses.r.shade(vc, albedo, sh[idx] if sh.ndim == 3 else sh, K, hw)
        stats[f"photo_{when}"] += _photo_error(colour, pix, rgb, region).tolist()
        stats[f"lmk_{when}"] += losses.lmk_sq(p, idx, world).tolist()
