"""What every exporter shares: frame selection and the per-frame images.

Exporters read the canonical FLAME tracking with `prep.models.flame_tracking.load_tracking`,
select frames (valid ones by default), copy images and masks under the target's numbering, and
convert cameras via `prep.export.cameras`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prep.errors import BadInputError, MissingInputError
from prep.io.files import read_image, write_image
from prep.models.flame_tracking import Tracking
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


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


def composite(rgba: np.ndarray, background: Sequence[int]) -> np.ndarray:
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
