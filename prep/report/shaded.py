"""Shaded overlays of a FLAME fit: the tracked mesh rendered over its frames, for QA.

Camera convention: OpenCV (x right, y down, z forward); the tracking file's `w2c` and crop `K`
(pixel centres at integers) place the mesh exactly where the fit put it, so any misalignment a
viewer sees is the fit's.

Each overlay frame is three panels side by side: the frame, the clay-shaded mesh (grey albedo,
a key light from the upper left) and the two blended. Frames the fit flagged invalid show the frame
with a red border and no mesh. Written as ``overlays/shaded/shaded.mp4`` plus a contact sheet,
streamed (frames are rendered in small batches, never all held), and logged to the run's logger.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from prep.io.files import image_hw, read_image
from prep.logger import ExperimentLogger
from prep.models.camera import rescale_intrinsics
from prep.models.flame import FlameModel
from prep.models.flame_tracking import Tracking, evaluate, load_tracking
from prep.render import render_mesh
from prep.report.overlay import sample_indices, write_overlays
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


def render_tracked(
    model: FlameModel, trk: Tracking, idx: list[int], size_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Clay renders of tracked frames.

    Args:
        model: FLAME layer with the tracking's n_shape / n_expr.
        trk: the tracking (flame/tracking.npz).
        idx: frame indices.
        size_hw: output size; the crop intrinsics are rescaled from ``trk.image_size``.

    Returns:
        ((B,H,W,3) uint8 renders, (B,H,W) bool coverage).
    """
    sel = np.asarray(idx)
    dt = model.v_template.dtype
    K = torch.as_tensor(trk.K_frames[sel], dtype=dt)
    K = rescale_intrinsics(K, [int(x) for x in trk.image_size], size_hw)
    with torch.no_grad():
        verts = evaluate(model, trk.params(), sel).vertices
        out = render_mesh(verts, model.faces, torch.as_tensor(trk.w2c[sel], dtype=dt), K, size_hw)
    rgb = (out.rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return rgb, out.mask.numpy()


def compose_panels(frame: np.ndarray, render: np.ndarray, mask: np.ndarray, alpha: float):
    """[frame | render | blend] as one (H, 3W, 3) uint8 image."""
    blend = frame.copy()
    m = mask[..., None]
    mixed = (frame.astype(np.float32) * (1 - alpha) + render.astype(np.float32) * alpha).round()
    blend = np.where(m, mixed.astype(np.uint8), frame)
    return np.concatenate([frame, render, blend], axis=1)


def _invalid_panel(frame: np.ndarray) -> np.ndarray:
    marked = frame.copy()
    cv2.rectangle(marked, (1, 1), (frame.shape[1] - 2, frame.shape[0] - 2), (255, 40, 40), 3)
    black = np.zeros_like(frame)
    return np.concatenate([marked, black, marked], axis=1)


class _BatchedPanels:
    """render(k) for write_overlays: panels of frames[k], rendered `batch` at a time."""

    def __init__(self, model, trk, frame_path, batch: int, alpha: float, frames=None):
        self.model, self.trk, self.frame_path = model, trk, frame_path
        self.batch, self.alpha = batch, alpha
        self.valid = trk.valid.astype(bool)
        self.frames = list(range(len(self.valid))) if frames is None else [int(f) for f in frames]
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, k: int) -> np.ndarray:
        i = self.frames[k]
        if i not in self.cache:
            self.cache.clear()
            idx = self.frames[k : k + self.batch]
            frames = {j: read_image(self.frame_path(j), "rgb") for j in idx}
            good = [j for j in idx if self.valid[j]]
            if good:
                size = image_hw(frames[good[0]])
                renders, masks = render_tracked(self.model, self.trk, good, size)
                for k, j in enumerate(good):
                    self.cache[j] = compose_panels(frames[j], renders[k], masks[k], self.alpha)
            for j in idx:
                self.cache.setdefault(j, _invalid_panel(frames[j]))
        return self.cache.pop(i)


def write_shaded_overlays(
    subject: SubjectDir,
    model: FlameModel,
    frame_path,
    fps: float,
    logger: ExperimentLogger | None = None,
    alpha: float = 0.6,
    video: bool = True,
    batch: int = 8,
    n_sheet: int = 12,
    max_frames: int | None = None,
) -> list[Path]:
    """Write overlays/shaded/shaded.mp4 and shaded_sheet.png for the subject's FLAME fit.

    Args:
        subject: the subject (reads flame/tracking.npz).
        model: FLAME layer matching the tracking's model and coefficient counts.
        frame_path: ``frame_path(i) -> Path`` of the image the fit used (crop frame).
        fps: frame rate of the mp4.
        logger: the run's experiment logger (video and contact sheet are logged), or None.
        alpha: opacity of the mesh in the blended panel.
        video: write the mp4 (else only the contact sheet).
        batch: frames rendered at once.
        n_sheet: frames on the contact sheet.
        max_frames: render at most this many evenly spaced frames (None = all).

    Returns:
        Paths written.
    """
    trk = load_tracking(subject, "the shaded overlay")
    n = trk.n_frames
    frames = sample_indices(n, max_frames) if max_frames else np.arange(n)
    panels = _BatchedPanels(model, trk, frame_path, batch, alpha, frames)
    out_dir = subject.overlay_dir("shaded")
    fps = fps * len(frames) / max(n, 1)
    written = write_overlays(
        out_dir, "shaded", len(frames), panels, max(fps, 1.0), video=video, n_sheet=n_sheet
    )
    if logger is not None:
        for p in written:
            if p.suffix == ".mp4":
                logger.log_video("overlay/shaded", p)
            else:
                logger.log_image("overlay/shaded_sheet", read_image(p, "rgb"))
    log.info("shaded overlays: %s", ", ".join(str(p) for p in written))
    return written
