"""Stage iris: two iris centres per frame, iris/iris.npz and the IMAvatar iris.json.

iris/iris.npz keys (T frames; order and sides documented in `prep.vision.iris`):
    frame_names (T,) str, iris_px (T,2,2) float32 crop pixels [subject's left, subject's right],
    valid (T,2) bool, reason (T,2) str, ear (T,2) float32 eye aspect ratio.
iris/iris.json ``{"000000.png": [x_a, y_a, x_b, y_b]}`` (a = subject's left eye, b = right) for
every frame with a face; eyes flagged invalid keep MediaPipe's estimate there (IMAvatar needs four
numbers), so consumers that can should drop them using iris.npz ``valid``.

The stage needs parsing so that ``stage=iris`` runs the whole face chain (landmarks, matting,
parsing); its overlay (overlays/iris/) is the chain's QA view on the ORIGINAL frames: crop box,
matte, 68 landmarks and irises.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from prep.geometry.crop import CropTransforms
from prep.io.files import read_image, save_npz, write_json
from prep.pipeline import StageContext, StageResult, register_stage
from prep.report import overlay
from prep.subject import SubjectDir
from prep.vision.iris import IrisResult, iris_from_mesh
from prep.vision.landmarks.files import load_dense_mesh, load_landmarks

log = logging.getLogger(__name__)


@register_stage(
    "iris",
    needs=("parsing",),
    config=("iris",),
    version=1,
    writes=lambda s: [s.iris_npz, s.iris_json],
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg.iris, ctx.subject
    dense, face_valid = load_dense_mesh(subject)
    res = iris_from_mesh(dense, face_valid, cfg.ear_closed, cfg.min_eye_width_ratio)
    names = load_landmarks(subject)["frame_names"]
    save_npz(
        subject.iris_npz,
        frame_names=names,
        iris_px=res.iris_px,
        valid=res.valid,
        reason=res.reason,
        ear=res.ear,
    )
    rows = res.to_json_rows()
    write_json(
        subject.iris_json,
        {str(nm): np.round(rows[i], 3).tolist() for i, nm in enumerate(names) if face_valid[i]},
        indent=None,
    )
    n = len(names)
    metrics = {
        "valid_frac_left": float(res.valid[:, 0].mean()),
        "valid_frac_right": float(res.valid[:, 1].mean()),
        "closed_frac": float((res.reason == "closed").any(axis=1).mean()),
        "turned_away_frac": float((res.reason == "turned_away").any(axis=1).mean()),
    }
    if ctx.logger:
        ctx.logger.log_metrics(metrics)
    if cfg.overlay:
        qa_overlay(subject, res)
    log.info("iris: %d/%d frames with both irises valid", int(res.valid.all(axis=1).sum()), n)
    return StageResult(n_frames=n, n_flagged=int((~res.valid.all(axis=1)).sum()), metrics=metrics)


def _to_orig(m_crop_to_orig: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m_crop_to_orig[:2, :2].T + m_crop_to_orig[:2, 2]


def qa_overlay(subject: SubjectDir, iris: IrisResult) -> None:
    """Crop box, matte tint, landmarks and irises over the original frames (overlays/iris/)."""
    lm = load_landmarks(subject)
    crop = CropTransforms.load(subject) if subject.crop_npz.exists() else None
    n = len(lm["frame_names"])

    def render(i: int) -> np.ndarray:
        img = read_image(subject.frame_path(i), "rgb")
        h, w = img.shape[:2]
        c2o = crop.crop_to_orig[i] if crop is not None else np.eye(3)
        if subject.alpha_path(i).exists():
            alpha = read_image(subject.alpha_path(i), "gray")
            o2c = crop.orig_to_crop[i] if crop is not None else np.eye(3)
            alpha = cv2.warpAffine(
                alpha, o2c[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
            img = overlay.tint_matte(img, alpha)
        if crop is not None:
            img = overlay.draw_box(img, crop.box_xyxy[i])
        img = overlay.draw_landmarks68(img, _to_orig(c2o, lm["points_px"][i]))
        return overlay.draw_irises(img, _to_orig(c2o, iris.iris_px[i]), iris.valid[i])

    overlay.write_overlays(subject.overlay_dir("iris"), "iris", n, render, subject.video_fps())
