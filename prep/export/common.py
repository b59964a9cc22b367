"""What every exporter shares: the canonical FLAME tracking file and the per-frame images.

The tracking file layout is fixed in the project brief (flame/tracking.npz, written by fit_flame);
`load_tracking` checks it and returns it typed. Exporters select frames (valid ones by default),
copy images and masks under the target's numbering, and convert cameras via `prep.export.cameras`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.errors import BadInputError, MissingInputError
from prep.io.files import load_npz, read_image, write_image
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

TRACKING_KEYS = (
    "frame_names", "valid", "lmk_rmse_px", "shape", "expr", "eyelids", "global_pose",
    "neck_pose", "jaw_pose", "eyes_pose", "transl", "w2c", "K", "image_size", "crop_to_orig",
    "model", "n_shape", "n_expr",
)  # fmt: skip


@dataclass
class Tracking:
    """flame/tracking.npz, typed. T frames; shapes as in the project brief."""

    frame_names: np.ndarray  # (T,) str
    valid: np.ndarray  # (T,) bool
    lmk_rmse_px: np.ndarray  # (T,)
    shape: np.ndarray  # (n_shape,)
    expr: np.ndarray  # (T, n_expr)
    eyelids: np.ndarray  # (T, 2)
    global_pose: np.ndarray  # (T, 3) axis-angle
    neck_pose: np.ndarray  # (T, 3)
    jaw_pose: np.ndarray  # (T, 3)
    eyes_pose: np.ndarray  # (T, 6)
    transl: np.ndarray  # (T, 3) metres
    w2c: np.ndarray  # (T, 4, 4) OpenCV
    K_frames: np.ndarray  # (T, 3, 3) crop pixels (the crop may move: crop.mode=smooth)
    image_size: np.ndarray  # (2,) = (h, w)
    crop_to_orig: np.ndarray  # (T, 3, 3)
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

    def pose15(self) -> np.ndarray:
        """(T,15) FLAME pose = [global, neck, jaw, eyes]."""
        return np.concatenate([self.global_pose, self.neck_pose, self.jaw_pose, self.eyes_pose], 1)


def load_tracking(subject: SubjectDir) -> Tracking:
    """Read and check flame/tracking.npz.

    Raises:
        MissingInputError: the file is absent (run fit_flame).
        BadInputError: keys are missing or shapes disagree.
    """
    path = subject.flame_tracking
    if not path.exists():
        raise MissingInputError("fit_flame", path, f"export needs FLAME tracking {path}")
    z = load_npz(path)
    missing = [k for k in TRACKING_KEYS if k not in z]
    if missing:
        raise BadInputError(f"{path} lacks keys {missing}; re-run stage=fit_flame")
    t = len(z["frame_names"])
    for k in ("valid", "expr", "global_pose", "transl", "w2c"):
        if len(z[k]) != t:
            raise BadInputError(f"{path}: {k} has {len(z[k])} rows for {t} frames")
    K = np.asarray(z["K"], np.float64)
    if K.shape not in ((3, 3), (t, 3, 3)):
        raise BadInputError(f"{path}: K has shape {K.shape}, expected (3, 3) or ({t}, 3, 3)")
    arrays = {k: z[k] for k in TRACKING_KEYS if k not in ("model", "n_shape", "n_expr", "K")}
    return Tracking(
        **arrays,
        K_frames=np.broadcast_to(K, (t, 3, 3)).copy(),
        model=str(z["model"]),
        n_shape=int(z["n_shape"]),
        n_expr=int(z["n_expr"]),
    )


def selected_frames(track: Tracking, only_valid: bool) -> np.ndarray:
    """Indices of the frames to export (valid ones unless `only_valid` is False)."""
    idx = np.flatnonzero(track.valid) if only_valid else np.arange(track.n_frames)
    if len(idx) == 0:
        raise BadInputError("no valid tracked frame to export (every frame is flagged invalid)")
    return idx


def frame_index(name: str) -> int:
    """Frame index from a per-frame file name such as '000123.png'."""
    return int(Path(str(name)).stem)


def load_rgba(subject: SubjectDir, i: int) -> np.ndarray:
    """Final RGBA crop of frame i (image/ when present, else crop frame + matte alpha)."""
    if subject.image_path(i).exists():
        return read_image(subject.image_path(i), mode="rgba")
    crop = subject.crop_frame_path(i)
    if not crop.exists():
        raise MissingInputError("matting", subject.image_path(i), f"missing image of frame {i}")
    rgb = read_image(crop)
    alpha = load_mask(subject, i)
    if alpha is None:
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=2)


def load_mask(subject: SubjectDir, i: int) -> np.ndarray | None:
    """(H,W) uint8 mask of frame i from mask/ or matting/alpha/, or None."""
    for p in (subject.mask_path(i), subject.alpha_path(i)):
        if p.exists():
            return read_image(p, mode="gray")
    return None


def composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """(H,W,4) uint8 -> (H,W,3) uint8 over a constant background colour."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, np.float32)
    return (rgba[..., :3] * a + bg * (1.0 - a) + 0.5).astype(np.uint8)


def write_if_needed(path: Path, img: np.ndarray, force: bool) -> bool:
    """Write an image unless it exists (resume); returns whether it was written."""
    if path.exists() and not force:
        return False
    write_image(path, img)
    return True


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as Wavefront OBJ (1-based faces), atomically.

    Args:
        vertices: (V,3) float.
        faces: (F,3) int, 0-based.
    """
    from prep.io.files import write_bytes

    v = "\n".join("v " + " ".join(f"{x:.6f}" for x in row) for row in vertices)
    f = "\n".join("f " + " ".join(str(int(x) + 1) for x in row) for row in faces)
    write_bytes(path, (v + "\n" + f + "\n").encode())


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (vertices (V,3), faces (F,3) 0-based) from an OBJ with triangle faces."""
    verts, faces = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            faces.append([int(x.split("/")[0]) - 1 for x in parts[1:4]])
    return np.asarray(verts), np.asarray(faces, dtype=np.int64)
