"""Trainable FLAME tracking parameters and the tracker's camera.

Camera convention: OpenCV (x right, y down, z forward); pixel centres at integer coordinates.
FLAME space (y up, z out of the face) maps to the camera by the fixed rotation
``F = diag(1, -1, -1)`` with zero translation: ``x_cam = F @ (x_flame + transl)``. Head motion is
carried by ``global_pose`` (rotation about FLAME's root joint) and ``transl``, so ``w2c`` is the
same for every frame. Intrinsics are held in ORIGINAL-video pixels and mapped to each frame's
crop by ``orig_to_crop``: ``K_t = orig_to_crop[t] @ K_orig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prep.models.camera import flip_yz, frontal_w2c, make_K, project
from prep.models.flame_tracking import PER_FRAME, POSE_PARAMS

ALL_PARAMS = (*PER_FRAME, "shape", "transl", "focal")


@dataclass
class InitValues:
    """Initial values (numpy); any field left None starts at zero."""

    shape: np.ndarray | None = None  # (n_shape,)
    expr: np.ndarray | None = None  # (T, n_expr)
    global_pose: np.ndarray | None = None  # (T, 3)
    neck_pose: np.ndarray | None = None
    jaw_pose: np.ndarray | None = None
    eyes_pose: np.ndarray | None = None  # (T, 6)
    transl: np.ndarray | None = None  # (T, 3) or (1, 3)


def w2c_flame() -> np.ndarray:
    """The fixed world(FLAME)-to-camera transform ``(4, 4)``."""
    return frontal_w2c()


class FlameParams(nn.Module):
    """Per-frame and shared parameters of a sequence.

    Args:
        T: frames. n_shape, n_expr: coefficient counts. eyelids: model has eyelid blendshapes.
        per_frame_transl: (T, 3) translation, else one shared (1, 3).
        focal_orig: initial focal (original pixels). estimate_focal: optimise it (shared fx = fy).
        aspect: fy / fx (kept fixed).
        cx, cy: principal point in original pixels (fixed).
    """

    # parameters and buffers registered by name in __init__, declared for the type checker
    u_shape: nn.Parameter
    u_transl: nn.Parameter
    u_focal: nn.Parameter
    aspect: torch.Tensor
    principal: torch.Tensor

    def __init__(
        self,
        T: int,
        n_shape: int,
        n_expr: int,
        eyelids: bool,
        per_frame_transl: bool,
        focal_orig: float,
        estimate_focal: bool,
        aspect: float,
        cx: float,
        cy: float,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()

        self.n_frames = T
        sizes = {
            "shape": (n_shape,),
            "expr": (T, n_expr),
            "global_pose": (T, 3),
            "neck_pose": (T, 3),
            "jaw_pose": (T, 3),
            "eyes_pose": (T, 6),
            "eyelids": (T, 2 if eyelids else 0),
            "transl": (T if per_frame_transl else 1, 3),
            "focal": (1,),
        }
        # Each value is stored as ``u * scale``: the optimiser moves ``u``, and `precondition`
        # sets ``scale`` so a unit step of every element changes the residuals by a similar
        # amount: a Jacobi preconditioner for L-BFGS (`prep.track.lbfgs.precondition`). The
        # Gauss-Newton solver works on the values themselves, so the scales do not change its steps.
        for name, size in sizes.items():
            self.register_parameter(f"u_{name}", nn.Parameter(torch.zeros(size, dtype=dtype)))
            self.register_buffer(f"scale_{name}", torch.ones(size, dtype=dtype))
        with torch.no_grad():
            self.u_focal.fill_(math.log(focal_orig))
        self.estimate_focal = estimate_focal
        self.register_buffer("aspect", torch.tensor(aspect, dtype=dtype))
        self.register_buffer("principal", torch.tensor([cx, cy], dtype=dtype))

    def value(self, name: str) -> torch.Tensor:
        """Current value of parameter `name` (differentiable w.r.t. its ``u_`` tensor)."""
        return getattr(self, f"u_{name}") * getattr(self, f"scale_{name}")

    shape = property(lambda self: self.value("shape"))
    expr = property(lambda self: self.value("expr"))
    global_pose = property(lambda self: self.value("global_pose"))
    neck_pose = property(lambda self: self.value("neck_pose"))
    jaw_pose = property(lambda self: self.value("jaw_pose"))
    eyes_pose = property(lambda self: self.value("eyes_pose"))
    eyelids = property(lambda self: self.value("eyelids"))
    transl = property(lambda self: self.value("transl"))
    log_focal = property(lambda self: self.value("focal"))

    @torch.no_grad()
    def set_value(self, name: str, value: torch.Tensor) -> None:
        scale = getattr(self, f"scale_{name}")
        getattr(self, f"u_{name}").copy_(value.to(scale) / scale)

    @torch.no_grad()
    def set_scale(self, name: str, scale: torch.Tensor) -> None:
        """Change the preconditioner of `name`, keeping its value."""
        v = self.value(name).clone()
        getattr(self, f"scale_{name}").copy_(scale)
        self.set_value(name, v)

    def groups(self, names: list[str]) -> dict[str, nn.Parameter]:
        """Optimised tensors (``u_``) of a phase by name ("all" = every one; focal if estimated)."""
        names = list(ALL_PARAMS) if "all" in names else names
        out = {}
        for n in names:
            if n not in ALL_PARAMS:
                raise ValueError(f"unknown tracker parameter {n!r}; known: {', '.join(ALL_PARAMS)}")
            if n == "focal" and not self.estimate_focal:
                continue
            u = getattr(self, f"u_{n}")
            if u.numel():
                out[n] = u
        return out

    def K_orig(self, log_focal: torch.Tensor | None = None) -> torch.Tensor:
        """(3, 3) intrinsics in original pixels (at `log_focal` instead of the current focal)."""
        f = (self.value("focal") if log_focal is None else log_focal).exp()[0]
        c = self.principal
        return make_K(f, f * self.aspect, c[0], c[1], dtype=f.dtype, device=f.device)

    @torch.no_grad()
    def load(self, init: InitValues) -> None:
        for name in ("shape", "expr", *POSE_PARAMS):
            v = getattr(init, name)
            if v is not None:
                self.set_value(name, torch.as_tensor(v))
        if init.transl is not None:
            t = torch.as_tensor(init.transl, dtype=self.u_shape.dtype).reshape(-1, 3)
            n = self.u_transl.shape[0]
            self.set_value("transl", t if t.shape[0] == n else t.mean(0, keepdim=True))

    @torch.no_grad()
    def bridge(self, valid: np.ndarray) -> None:
        """Replace per-frame values of invalid frames by linear interpolation of valid ones."""
        valid = np.asarray(valid, bool)
        if valid.all() or not valid.any():
            return
        t_all = np.arange(len(valid))
        t_ok = t_all[valid]
        names = list(PER_FRAME) + (["transl"] if self.u_transl.shape[0] > 1 else [])
        for name in names:
            x = self.value(name).detach().cpu().double().numpy()
            if x.size == 0:
                continue
            for d in range(x.shape[1]):  # a few dozen columns, interpolated over all frames
                x[~valid, d] = np.interp(t_all[~valid], t_ok, x[valid, d])
            self.set_value(name, torch.as_tensor(x))

    def export(self) -> dict[str, np.ndarray]:
        """Parameters as float32 numpy (transl expanded to (T, 3))."""
        T = self.n_frames
        out = {n: self.value(n).detach().cpu().numpy().astype(np.float32) for n in PER_FRAME}
        out["shape"] = self.shape.detach().cpu().numpy().astype(np.float32)
        tr = self.transl.detach().cpu().numpy().astype(np.float32)
        out["transl"] = np.repeat(tr, T, 0) if tr.shape[0] == 1 else tr
        if out["eyelids"].shape[1] == 0:
            out["eyelids"] = np.zeros((T, 2), np.float32)
        return out


def project_flame_points(
    points: torch.Tensor, K_orig: torch.Tensor, orig_to_crop: torch.Tensor
) -> torch.Tensor:
    """FLAME-space points ``(T, N, 3)`` (after transl) -> crop pixels ``(T, N, 2)``."""
    return project(flip_yz(points), orig_to_crop @ K_orig)[0]
