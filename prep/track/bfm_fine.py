"""Fine BFM tracker (AD-NeRF / OTAvatar style) as a LightningModule.

One video, one identity: identity and texture are single tensors shared by all frames;
expression, Euler angles, translation and SH light are tensors indexed by frame; the focal length
is searched on a grid, optimised jointly, or fixed. Phases (each a `Trainer.fit`):

1. focal search (mode ``search``): a landmark fit on a subset of frames per candidate focal; the
   focal with the lowest landmark error wins (AD-NeRF scans 600..1400).
2. landmarks: all frames at once, landmark L2 + temporal Laplacian on rigid motion and
   expression + Gaussian priors.
3. photometric: mini-batches of frames streamed from disk; shaded model colours at a few thousand
   skin vertices are compared with the image sampled at their projections (front-facing vertices
   only; no z-buffer, so self-occluded vertices of turned heads count as noise). Per-frame SH
   light is solved in closed form for each batch before the gradient step.

Conventions: AD-NeRF's (see `prep.models.bfm`): ``R = Rx Ry Rz(-e2)``, camera looking down -z,
principal point at the image centre ((S - 1) / 2), focal and landmarks in pixels of the S x S fit
image. The stage converts to crop pixels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from prep.config.bfm import FineConfig
from prep.config.core import Accelerator, Precision, TrainerConfig
from prep.models.bfm import (
    INIT_LIGHT,
    BfmModel,
    adnerf_w2c,
    gl_normals,
    sample_vertices,
    sh_basis,
    sh_shade,
    submesh,
    vertex_normals,
)
from prep.models.camera import make_K, project
from prep.track.bfm_losses import (
    inside_image,
    landmark_loss,
    laplacian_loss,
    photometric_loss,
    sample_image,
)
from prep.track.trainer import make_trainer

log = logging.getLogger(__name__)


def init_pose(
    model: BfmModel, lmk_px: np.ndarray, weights: np.ndarray, focal: float, size: int
) -> np.ndarray:
    """(T, 3) AD-NeRF translations placing the mean face over each frame's landmarks.

    Frames without landmarks (zero weights) take the value interpolated from their neighbours,
    so the temporal smoothness term never pulls towards a meaningless start.
    """
    kp = model.mean_shape[model.keypoints].cpu().numpy()
    spread_model = kp[:, :2].std(0).mean()
    spread_img = lmk_px.std(1).mean(-1).clip(min=1.0)
    z = -focal * spread_model / spread_img
    c = (size - 1) / 2
    centre = lmk_px.mean(1)
    x = (centre[:, 0] - c) * (-z) / focal  # u = -f X / Z + c
    y = (centre[:, 1] - c) * z / focal  # v = f Y / Z + c
    trans = np.stack([x, y, z], 1)
    ok = weights.sum(1) > 0
    if ok.any() and not ok.all():
        t = np.arange(len(trans))
        trans = np.stack([np.interp(t, t[ok], col[ok]) for col in trans.T], 1)
    return trans.astype(np.float32)


class _Repeat(Dataset):
    """`n` identical full-batch index tensors (the landmark phase uses every frame per step)."""

    def __init__(self, n: int, T: int):
        self.n, self.idx = n, torch.arange(T)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"idx": self.idx}


class FrameImages(Dataset):
    """Frames resized to the fit size, read from disk one at a time (never all in memory)."""

    def __init__(self, ids: np.ndarray, load: Callable[[int], np.ndarray], size: int):
        self.ids, self.load, self.size = ids, load, size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> dict:
        import cv2

        i = int(self.ids[k])
        img = self.load(i)
        if img.shape[:2] != (self.size, self.size):
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return {
            "idx": torch.tensor(i),
            "image": torch.from_numpy(img).permute(2, 0, 1).float() / 255,
        }


class BfmFineModule(L.LightningModule):
    """Per-video BFM fit; see the module docstring for the phases."""

    lmk: torch.Tensor  # (T, 68, 2) detections in fit pixels (buffer)
    wts: torch.Tensor  # (T, 68) their confidences (buffer)

    def __init__(
        self,
        model: BfmModel,
        lmk_px: np.ndarray,
        weights: np.ndarray,
        focal: float,
        s: FineConfig,
        optimise_focal: bool = False,
        euler0: np.ndarray | None = None,
    ):
        super().__init__()
        self.bfm, self.s, self.phase = model, s, "lmk"
        self.optimise_focal = optimise_focal
        T = len(lmk_px)
        self.register_buffer("lmk", torch.as_tensor(lmk_px, dtype=torch.float32))
        self.register_buffer("wts", torch.as_tensor(weights, dtype=torch.float32))
        self.kp = model.subset(model.keypoints)
        self.id = torch.nn.Parameter(torch.zeros(1, model.n_id))
        self.tex = torch.nn.Parameter(torch.zeros(1, model.n_tex))
        self.exp = torch.nn.Parameter(torch.zeros(T, model.n_exp))
        e0 = torch.zeros(T, 3) if euler0 is None else torch.as_tensor(euler0, dtype=torch.float32)
        self.euler = torch.nn.Parameter(e0.clone())
        self.trans = torch.nn.Parameter(
            torch.from_numpy(init_pose(model, lmk_px, weights, focal, s.size))
        )
        self.gamma = torch.nn.Parameter(torch.zeros(T, 27))
        self.log_focal = torch.nn.Parameter(
            torch.tensor(float(np.log(focal))), requires_grad=optimise_focal
        )
        self.history: list[dict[str, float | str]] = []  # phase name and loss terms
        self._photo_setup()

    def _photo_setup(self) -> None:
        ids = sample_vertices(self.bfm, self.s.n_photo_vertices)
        tri = self.bfm.tri.cpu().numpy()
        self.photo_ok = len(tri) > 0 and len(ids) > 0
        if not self.photo_ok:
            return
        sub_v, sub_t, pos = submesh(tri, ids)
        self.photo_shape = self.bfm.subset(sub_v)
        self.photo_tri = torch.from_numpy(sub_t)
        self.photo_pos = torch.from_numpy(pos)
        self.photo_ids = torch.from_numpy(ids)

    @property
    def focal(self) -> torch.Tensor:
        return self.log_focal.exp()

    def K(self) -> torch.Tensor:
        c = (self.s.size - 1) / 2
        return make_K(self.focal, self.focal, torch.tensor(c), torch.tensor(c))

    def project_landmarks(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) fit-image landmarks of frames `idx`."""
        verts = self.kp(self.id, self.exp[idx])
        xy, _ = project(verts, self.K(), adnerf_w2c(self.euler[idx], self.trans[idx]))
        return xy

    def _common_terms(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.s.w
        return {
            "lmk": w.lmk * landmark_loss(self.project_landmarks(idx), self.lmk[idx], self.wts[idx]),
            "smooth_rigid": w.smooth_rigid
            * (laplacian_loss(self.euler) + laplacian_loss(self.trans)),
            "smooth_exp": w.smooth_exp * laplacian_loss(self.exp),
            "reg_id": w.reg_id * self.id.pow(2).sum(),
            "reg_exp": w.reg_exp * self.exp[idx].pow(2).sum(1).mean(),
        }

    def photo_terms(self, idx: torch.Tensor, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Photometric term of a batch, after solving its SH light in closed form."""
        verts = self.photo_shape(self.id, self.exp[idx])
        normals = vertex_normals(verts, self.photo_tri)[:, self.photo_pos]
        verts = verts[:, self.photo_pos]
        w2c = adnerf_w2c(self.euler[idx], self.trans[idx])
        xy, _ = project(verts, self.K(), w2c)
        p_cv = verts @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]
        n_cv = normals @ w2c[:, :3, :3].transpose(1, 2)
        visible = ((n_cv * -p_cv).sum(-1) > 0) & inside_image(xy, self.s.size, self.s.size)
        observed = sample_image(images, xy)
        albedo = self.bfm.texture(self.tex, self.photo_ids)
        n_gl = gl_normals(normals, w2c)
        with torch.no_grad():
            self.gamma[idx] = solve_light(albedo.expand(len(idx), -1, -1), n_gl, observed, visible)
        colour = sh_shade(albedo, n_gl, self.gamma[idx])
        w = self.s.w
        return {
            "photo": w.photo * photometric_loss(colour, observed, visible.float()),
            "reg_tex": w.reg_tex * self.tex.pow(2).sum(),
        }

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        idx = batch["idx"].reshape(-1)
        self._batch_frames = idx
        terms = self._common_terms(idx)
        if self.phase == "photo":
            terms.update(self.photo_terms(idx, batch["image"]))
        loss = torch.stack(list(terms.values())).sum()
        if batch_idx % 25 == 0:
            self.history.append(
                {"phase": self.phase, **{k: float(v.detach()) for k, v in terms.items()}}
            )
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Photometric phase: only the batch's frames move.

        Frames outside the batch get gradient only from the smoothness term; Adam would scale
        that tiny gradient up to a full step and let them drift from their landmarks.
        """
        if self.phase != "photo":
            return
        outside = torch.ones(self.exp.shape[0], dtype=torch.bool)
        outside[self._batch_frames] = False
        for p in (self.exp, self.euler, self.trans):
            if p.grad is not None:
                p.grad[outside] = 0

    def configure_optimizers(self):
        per_frame = [self.exp, self.euler, self.trans]
        if self.phase == "photo":
            # Each frame is visited once per epoch: no momentum (it would keep moving frames
            # outside the batch). Per-frame parameters move only with photo_frame_lr_scale > 0:
            # Adam's first step is ~lr in every coordinate whatever the gradient, which on our
            # benchmark pushed poses off their landmarks (bench/fit_3dmm.py).
            groups = [{"params": [self.tex], "lr": self.s.lr}]  # identity stays from landmarks
            if self.s.photo_frame_lr_scale > 0:
                groups.append({"params": per_frame, "lr": self.s.lr * self.s.photo_frame_lr_scale})
            return torch.optim.Adam(groups, betas=(0.0, 0.999))
        groups = [{"params": per_frame + [self.id], "lr": self.s.lr}]
        if self.optimise_focal:
            groups.append({"params": [self.log_focal], "lr": self.s.lr * 0.5})
        return torch.optim.Adam(groups)

    @torch.no_grad()
    def lmk_rmse_px(self) -> np.ndarray:
        """(T,) per-frame landmark RMSE in fit pixels (weighted by confidence)."""
        idx = torch.arange(self.lmk.shape[0])
        sq = (self.project_landmarks(idx) - self.lmk).pow(2).sum(-1)
        return ((sq * self.wts).sum(1) / self.wts.sum(1).clamp(min=1e-6)).sqrt().numpy()


def solve_light(albedo, normals_gl, observed, visible, ridge: float = 1e-3) -> torch.Tensor:
    """Least-squares SH light per frame: ``observed ~ albedo * (Y(n) @ (g + INIT_LIGHT))``.

    Args:
        albedo, normals_gl, observed: (B, K, 3); visible: (B, K) bool.

    Returns:
        (B, 27) gamma (colour-major, `INIT_LIGHT` subtracted); zero without visible vertices.
    """
    Y = sh_basis(normals_gl)  # (B, K, 9)
    m = visible.float()[..., None]
    A = albedo.permute(0, 2, 1)[..., None] * Y[:, None]  # (B, 3, K, 9)
    A = A * m[:, None]
    b = (observed.permute(0, 2, 1) * m[..., 0][:, None])[..., None]  # (B, 3, K, 1)
    AtA = A.transpose(-1, -2) @ A + ridge * torch.eye(9)
    g = torch.linalg.solve(AtA, A.transpose(-1, -2) @ b)[..., 0]  # (B, 3, 9)
    g = g - g.new_tensor(INIT_LIGHT)
    has = visible.any(1)[:, None, None]
    return torch.where(has, g, torch.zeros_like(g)).reshape(-1, 27)


def _trainer(cfg: TrainerConfig | None, **kwargs) -> L.Trainer:
    """The shared Trainer (prep.track.trainer) in 32-bit on the CPU, where the BFM model lives."""
    cfg = cfg or TrainerConfig()
    if (cfg.accelerator or "cpu") != "cpu" or cfg.precision not in ("32-true", "32"):
        log.warning(
            "fit_3dmm_fine runs in 32-true on the CPU (trainer.accelerator/precision "
            "apply to fit_flame)"
        )
    cfg = dataclasses.replace(
        cfg, accelerator=Accelerator.cpu, devices=None, precision=Precision("32-true")
    )
    return make_trainer(cfg, "cpu", **kwargs)


def fit_landmark_phase(
    module: BfmFineModule, steps: int, trainer: TrainerConfig | None = None
) -> None:
    """Landmark phase: `steps` full-batch Adam steps over every frame."""
    module.phase = "lmk"
    T = module.lmk.shape[0]
    loader = DataLoader(_Repeat(steps, T), batch_size=None)
    _trainer(trainer, max_steps=steps).fit(module, loader)


def fit_photo_phase(
    module: BfmFineModule,
    images: FrameImages,
    epochs: int,
    batch: int,
    trainer: TrainerConfig | None = None,
) -> None:
    """Photometric phase: `epochs` passes over the frames in mini-batches."""
    if not module.photo_ok or epochs <= 0:
        return
    module.phase = "photo"
    loader = DataLoader(images, batch_size=batch, shuffle=True, num_workers=0)
    _trainer(trainer, max_epochs=epochs).fit(module, loader)


@dataclass
class FineResult:
    """Fitted video (fit-image pixels).

    Attributes:
        id (1, n_id), tex (1, n_tex), exp (T, n_exp), euler (T, 3), trans (T, 3), gamma (T, 27);
        focal: fit pixels; lmk_rmse_px: (T,) fit pixels; focal_losses: (K, 2) [focal, rmse] of
        the search (empty otherwise); history: loss terms every 25 steps.
    """

    id: np.ndarray
    tex: np.ndarray
    exp: np.ndarray
    euler: np.ndarray
    trans: np.ndarray
    gamma: np.ndarray
    focal: float
    lmk_rmse_px: np.ndarray
    focal_losses: np.ndarray
    history: list[dict[str, float | str]]


def search_focal(
    model: BfmModel,
    lmk_px: np.ndarray,
    weights: np.ndarray,
    candidates: list[float],
    s: FineConfig,
    n_frames: int,
    euler0: np.ndarray | None = None,
    trainer: TrainerConfig | None = None,
) -> np.ndarray:
    """Landmark RMSE per candidate focal on `n_frames` evenly spaced frames -> (K, 2)."""
    usable = np.flatnonzero(weights.sum(1) > 0)
    sel = usable[np.linspace(0, len(usable) - 1, min(n_frames, len(usable))).round().astype(int)]
    quiet = dataclasses.replace(s, w=dataclasses.replace(s.w, smooth_rigid=0.0, smooth_exp=0.0))
    rows = []
    for f in candidates:
        m = BfmFineModule(
            model,
            lmk_px[sel],
            weights[sel],
            f,
            quiet,
            euler0=None if euler0 is None else euler0[sel],
        )
        fit_landmark_phase(m, s.iters_focal, trainer)
        rows.append((f, float(np.sqrt(np.mean(m.lmk_rmse_px() ** 2)))))
        log.info("focal %.0f px: landmark rmse %.3f px", *rows[-1])
    return np.array(rows, np.float64)


def fit_video(
    model: BfmModel,
    lmk_px: np.ndarray,
    weights: np.ndarray,
    s: FineConfig,
    focal_mode: str,
    focal: float,
    candidates: list[float],
    search_frames: int,
    images: FrameImages | None,
    euler0: np.ndarray | None = None,
    trainer: TrainerConfig | None = None,
) -> FineResult:
    """Run the phases on one video; see the module docstring.

    Args:
        lmk_px: (T, 68, 2) landmarks in fit pixels; weights: (T, 68) confidences (0 = missing).
        focal_mode: "search" | "optimise" | "fixed"; focal: the fixed/initial focal (fit px);
        candidates: focal grid (fit px) for "search".
        images: the frames for the photometric phase, or None to skip it.
        euler0: optional (T, 3) initial Euler angles (from the coarse fit).
        trainer: the Lightning Trainer settings (precision, determinism); the fit runs on the CPU.
    """
    losses = np.zeros((0, 2))
    if focal_mode == "search":
        losses = search_focal(model, lmk_px, weights, candidates, s, search_frames, euler0, trainer)
        focal = float(losses[np.argmin(losses[:, 1]), 0])
    elif focal_mode not in ("optimise", "fixed"):
        raise ValueError(f"focal_mode must be search, optimise or fixed, not {focal_mode!r}")
    module = BfmFineModule(model, lmk_px, weights, focal, s, focal_mode == "optimise", euler0)
    fit_landmark_phase(module, s.iters_lmk, trainer)
    if images is not None:
        fit_photo_phase(module, images, s.photo_epochs, s.photo_batch, trainer)
    p = {
        k: getattr(module, k).detach().cpu().numpy()
        for k in ("id", "tex", "exp", "euler", "trans", "gamma")
    }
    if focal_mode == "optimise":  # otherwise keep the exact value (exp(log f) is not exact)
        focal = float(module.focal.detach())
    return FineResult(
        **p,
        focal=focal,
        lmk_rmse_px=module.lmk_rmse_px(),
        focal_losses=losses,
        history=module.history,
    )
