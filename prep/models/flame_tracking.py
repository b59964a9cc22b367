"""The canonical FLAME tracking (flame/tracking.npz): its parameter names, reading, writing and
evaluating it through `prep.models.flame.FlameModel`.

This is the one home of these (tests/test_conventions.py): fit_flame and import_tracking write the
file with `tracking_arrays` + `save_tracking`; the exporters, the report, albedo and the
photometric phase read it with `load_tracking`; everything that turns FLAME parameters into
vertices or landmarks goes through `evaluate` / `landmarks` / `landmarks_px`.

Camera convention (`prep.models.camera`): OpenCV axes, ``x_cam = w2c @ (FLAME(x) + transl)``;
``K`` in crop pixels with pixel centres at integers, one (3, 3) for a static crop or (T, 3, 3)
when the crop moves (crop.mode=smooth).

flame/tracking.npz keys (T frames):
    frame_names (T,) str             image names of the fitted frames
    valid (T,) bool                  the frame was fitted (False: bridged from its neighbours)
    lmk_rmse_px (T,) float32         landmark RMSE in crop pixels (NaN where invalid)
    shape (n_shape,) float32         identity; (T, n_shape) for a photo collection
    expr (T, n_expr), eyelids (T, 2) float32
    global_pose, neck_pose, jaw_pose (T, 3), eyes_pose (T, 6) float32, axis-angle radians
    transl (T, 3) float32            metres, added to the posed mesh
    w2c (T, 4, 4) float32            world (FLAME) to camera, OpenCV axes
    K (3, 3) or (T, 3, 3) float32    crop pixels
    image_size (2,) int64            (h, w) of the crop
    crop_to_orig (T, 3, 3) float32   crop pixels -> original pixels
    model str, n_shape int, n_expr int   the FLAME version and coefficient counts
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prep.errors import BadInputError, MissingInputError
from prep.io.files import load_npz, save_npz
from prep.models.camera import intrinsics_for, project_np
from prep.subject import SubjectDir

if TYPE_CHECKING:
    import torch

    from prep.models.flame import FlameModel, FlameOutput

POSE_PARAMS = ("global_pose", "neck_pose", "jaw_pose", "eyes_pose")  # the 15-d pose, in order
HEAD_ROTATIONS = POSE_PARAMS[:3]  # the three 3-d joint rotations (the eyes are 6-d)
PER_FRAME = ("expr", *POSE_PARAMS, "eyelids")  # one row per frame (transl may be shared)
FLAME_PARAMS = ("shape", *PER_FRAME, "transl")
TRACKING_KEYS = (
    "frame_names",
    "valid",
    "lmk_rmse_px",
    *FLAME_PARAMS,
    "w2c",
    "K",
    "image_size",
    "crop_to_orig",
    "model",
    "n_shape",
    "n_expr",
)


@dataclass
class Tracking:
    """flame/tracking.npz, typed (keys and shapes in the module docstring)."""

    frame_names: np.ndarray
    valid: np.ndarray
    lmk_rmse_px: np.ndarray
    shape: np.ndarray
    expr: np.ndarray
    eyelids: np.ndarray
    global_pose: np.ndarray
    neck_pose: np.ndarray
    jaw_pose: np.ndarray
    eyes_pose: np.ndarray
    transl: np.ndarray
    w2c: np.ndarray
    K_frames: np.ndarray  # (T, 3, 3): the file's K for every frame
    image_size: np.ndarray
    crop_to_orig: np.ndarray
    model: str
    n_shape: int
    n_expr: int

    @property
    def n_frames(self) -> int:
        return len(self.frame_names)

    @property
    def K(self) -> np.ndarray:
        """(3,3) intrinsics shared by every frame.

        Raises:
            BadInputError: the crop moves, so each frame has its own intrinsics.
        """
        if not np.allclose(self.K_frames, self.K_frames[:1], atol=1e-6):
            raise BadInputError(
                "this export format needs one camera for all frames but the crop moves "
                "(crop.mode=smooth gives per-frame intrinsics); re-run with crop.mode=static"
            )
        return self.K_frames[0]

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray], source: str = "tracking") -> Tracking:
        """Check and type the arrays of a tracking file (`source` names it in errors).

        Raises:
            BadInputError: keys are missing or shapes disagree.
        """
        missing = [k for k in TRACKING_KEYS if k not in z]
        if missing:
            raise BadInputError(f"{source} lacks keys {missing}; re-run stage=fit_flame")
        t = len(z["frame_names"])
        for k in ("valid", "expr", "global_pose", "transl", "w2c"):
            if len(z[k]) != t:
                raise BadInputError(f"{source}: {k} has {len(z[k])} rows for {t} frames")
        K = np.asarray(z["K"], np.float64)
        if K.shape not in ((3, 3), (t, 3, 3)):
            raise BadInputError(f"{source}: K has shape {K.shape}, expected (3, 3) or ({t}, 3, 3)")
        arrays = {k: z[k] for k in TRACKING_KEYS if k not in ("model", "n_shape", "n_expr", "K")}
        return cls(
            **arrays,
            K_frames=np.broadcast_to(K, (t, 3, 3)).copy(),
            model=str(z["model"]),
            n_shape=int(z["n_shape"]),
            n_expr=int(z["n_expr"]),
        )

    def params(self) -> dict[str, np.ndarray]:
        """The FLAME parameters by name (`FLAME_PARAMS`), for `evaluate` and `landmarks`."""
        return {k: getattr(self, k) for k in FLAME_PARAMS}

    def pose15(self) -> np.ndarray:
        """(T,15) FLAME pose = [global, neck, jaw, eyes]."""
        return np.concatenate([getattr(self, k) for k in POSE_PARAMS], 1)


def load_tracking(subject: SubjectDir, needed_by: str = "export") -> Tracking:
    """Read and check flame/tracking.npz.

    Raises:
        MissingInputError: the file is absent (run fit_flame).
        BadInputError: keys are missing or shapes disagree.
    """
    path = subject.flame_tracking
    if not path.exists():
        raise MissingInputError("fit_flame", path, f"{needed_by} needs FLAME tracking {path}")
    return Tracking.from_arrays(load_npz(path), str(path))


def read_shape(path: Path) -> np.ndarray:
    """The identity coefficients ``(n_shape,)`` float64 of another subject's tracking file."""
    return np.asarray(load_npz(path)["shape"], np.float64).reshape(-1)


def tracking_arrays(
    frame_names,
    valid: np.ndarray,
    lmk_rmse_px: np.ndarray,
    params: Mapping[str, np.ndarray],
    w2c: np.ndarray,
    K: np.ndarray,
    image_size,
    crop_to_orig: np.ndarray,
    model: str,
) -> dict[str, np.ndarray]:
    """The arrays of flame/tracking.npz, in its dtypes (see the module docstring).

    Args:
        params: `FLAME_PARAMS` arrays; eyelids (T, 2) zeros for a model without them.
        K: (3, 3) or (T, 3, 3) crop-pixel intrinsics.
    """
    return {
        "frame_names": np.asarray(frame_names).astype(str),
        "valid": np.asarray(valid).astype(bool),
        "lmk_rmse_px": np.asarray(lmk_rmse_px, np.float32),
        **{k: np.asarray(params[k], np.float32) for k in FLAME_PARAMS},
        "w2c": np.asarray(w2c, np.float32),
        "K": np.asarray(K, np.float32),
        "image_size": np.asarray(image_size, np.int64),
        "crop_to_orig": np.asarray(crop_to_orig, np.float32),
        "model": np.asarray(model),
        "n_shape": np.asarray(np.shape(params["shape"])[-1]),
        "n_expr": np.asarray(np.shape(params["expr"])[1]),
    }


def save_tracking(subject: SubjectDir, arrays: Mapping[str, np.ndarray]) -> None:
    """Write flame/tracking.npz (atomically) from `tracking_arrays`."""
    missing = [k for k in TRACKING_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"tracking arrays lack {missing}")
    save_npz(subject.flame_tracking, **arrays)


def rest_params(shape, n_expr: int, n_frames: int = 1) -> dict[str, np.ndarray]:
    """FLAME parameters of `n_frames` frames at rest (zero pose and expression) with `shape`."""
    z3 = np.zeros((n_frames, 3))
    return {
        "shape": shape,
        "expr": np.zeros((n_frames, n_expr)),
        "eyelids": np.zeros((n_frames, 2)),
        "global_pose": z3,
        "neck_pose": z3.copy(),
        "jaw_pose": z3.copy(),
        "eyes_pose": np.zeros((n_frames, 6)),
        "transl": z3.copy(),
    }


# ---- evaluation -----------------------------------------------------------------------------


def flame_inputs(model: FlameModel, params: Mapping, idx=None) -> dict[str, torch.Tensor]:
    """`FlameModel` keyword arguments from FLAME parameters (numpy arrays or tensors).

    Arrays become tensors of the model's dtype (tensors keep their graph). Per-frame rows are
    those of `idx` when given; a per-frame shape (T, n_shape) is selected likewise. Fewer
    expression coefficients than the model's are padded with zeros; eyelids are passed only to
    a model that has them; a missing ``transl`` means none.

    Args:
        model: the FLAME layer.
        params: `FLAME_PARAMS` by name (``eyelids`` and ``transl`` optional).
        idx: frame indices or a slice, or None for every row.
    """
    import torch

    dt = model.v_template.dtype

    def t(name: str, per_frame: bool) -> torch.Tensor:
        a = params[name]
        a = a if isinstance(a, torch.Tensor) else np.asarray(a)
        if idx is not None and per_frame:
            a = a[idx]
        return torch.as_tensor(a, dtype=dt)

    out = {k: t(k, True) for k in ("expr", *POSE_PARAMS)}
    out["shape"] = t("shape", np.ndim(params["shape"]) == 2)
    missing = model.n_expr - out["expr"].shape[-1]
    if missing > 0:
        out["expr"] = torch.cat([out["expr"], out["expr"].new_zeros(len(out["expr"]), missing)], 1)
    if params.get("transl") is not None:
        out["transl"] = t("transl", np.ndim(params["transl"]) == 2)
    lids = params.get("eyelids")
    if model.has_eyelids and lids is not None and np.prod(lids.shape):
        out["eyelids"] = t("eyelids", True)
    return out


def evaluate(model: FlameModel, params: Mapping, idx=None, vertex_idx=None) -> FlameOutput:
    """Posed vertices and joints of FLAME parameters (`flame_inputs`; `vertex_idx`: a subset)."""
    return model(**flame_inputs(model, params, idx), vertex_idx=vertex_idx)


def landmarks(model: FlameModel, params: Mapping, idx=None, bins=None, with_mediapipe=False):
    """``(lmk (B, 68|70, 3), mp (B, M, 3) or None, subset FlameOutput)`` of FLAME parameters,
    evaluating only the vertices the landmarks need (`FlameModel.landmarks`)."""
    inputs = flame_inputs(model, params, idx)
    return model.landmarks(**inputs, bins=bins, with_mediapipe=with_mediapipe)


def landmarks_px(model: FlameModel, params: Mapping, w2c=None, K=None, bins=None) -> np.ndarray:
    """``(T, L, 2)`` landmarks of FLAME parameters in pixels.

    Args:
        params: FLAME parameters, and the camera ``w2c``, ``K`` unless given (tracking arrays).
        w2c: (T,4,4) world-to-camera. K: (3,3) or (T,3,3) intrinsics.
        bins: (T,) contour yaw bins to use instead of those of the FLAME pose, or None.
    """
    import torch

    w2c = params["w2c"] if w2c is None else w2c
    K = params["K"] if K is None else K
    with torch.no_grad():
        lmk, _, _ = landmarks(model, params, bins=bins)
    x = lmk.double().numpy()
    return project_np(x, np.asarray(w2c, np.float64), intrinsics_for(K, slice(None)))
