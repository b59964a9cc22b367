"""Stage crop: square face crops of every frame and their transforms (crop/crop.npz).

The crop boxes come from the detection track (`prep.geometry.crop_boxes.make_crop`;
`prep.geometry.crop` documents the crop.npz keys and the pixel convention); the transforms are
written first, then every frame is warped to crop/frames/%06d.jpg. Frames already written for the
same transforms are kept, so a killed run resumes. Invalid frames (long detection gaps) still get a
crop (from the interpolated box) so every per-frame folder has every frame; crop.npz `valid` marks
them. Where the box leaves the frame the crop holds ``crop.pad_value`` (crop.npz `inframe_xyxy`
says where the frame is; `CropTransforms.load(subject).inframe_mask(i)` gives the pixels), or,
with ``crop.inside_frame=true``, the box is kept inside the frame.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from prep.config.perception import CropConfig
from prep.datasets.sequence import is_sequence
from prep.errors import BadInputError
from prep.geometry.crop import CropTransforms, warp_to_crop
from prep.geometry.crop_boxes import box_accel_px, face_margin, make_crop, overflow_px
from prep.io.files import load_npz, read_image, save_npz, write_image
from prep.pipeline import StageContext, StageResult, register_stage
from prep.progress import progress
from prep.resume import array_digest, manifest_digest, outputs_for
from prep.vision.frames import read_rgb, reduced_to_orig, reduction

log = logging.getLogger(__name__)


def _check_inside(ct: CropTransforms, cfg: CropConfig) -> float:
    """The fraction of frames whose crop box leaves the source frame (said in one line)."""
    over = overflow_px(ct.box_xyxy, tuple(ct.orig_hw))
    frac = float((over > 0.5).mean())
    if cfg.drop_outside and frac > 0:
        raise BadInputError(
            f"the crop box leaves the frame by up to {over.max():.0f} px in {frac:.0%} of frames; "
            "this clip is dropped (crop.drop_outside=true); lower crop.scale or allow padding"
        )
    if frac > 0:
        fill = (
            f"padded with crop.pad_value={cfg.pad_value}"
            if cfg.pad == "constant"
            else "filled with the edge pixels (crop.pad=replicate)"
        )
        log.info(
            "crop: the box leaves the frame by up to %.0f px in %d of %d frames: %s and left out "
            "of mattes, parsing and fits (crop.inside_frame=true keeps the box inside)",
            over.max(),
            int((over > 0.5).sum()),
            len(over),
            fill,
        )
    return frac


@register_stage(
    "crop",
    needs=("detect",),
    config=("crop", "sequence"),
    version=2,  # 2: constant padding by default, exact outside the frame; inframe_xyxy
    writes=lambda s: [s.crop_npz, s.crop_dir],
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg.crop, ctx.subject
    det = load_npz(subject.detections)
    hw = (int(det["image_hw"][0]), int(det["image_hw"][1]))
    sequence = is_sequence(ctx.cfg, subject)
    names = list(det["frame_names"])
    ct = make_crop(det["box_xyxy"], det["valid"].astype(bool), hw, names, cfg, sequence)
    outside = _check_inside(ct, cfg)
    save_npz(subject.crop_npz, **ct.to_arrays())
    key = {
        "M": array_digest(ct.orig_to_crop),
        "pad": cfg.pad,
        "value": cfg.pad_value,
        "painted": True,  # pixels outside the frame set to the pad value (version 2)
        "q": cfg.jpeg_quality,
        "n": cfg.image_size,
        "frames": manifest_digest(subject.manifest_path("extract_frames")),
    }
    out_dir = subject.ensure(subject.crop_dir)
    outputs_for(subject.root / "crop" / "frames.json", key, [out_dir], ctx.force)
    n = len(ct.valid)
    todo = [i for i in range(n) if not subject.crop_frame_path(i).exists()]

    def one(i: int) -> None:
        path = subject.frame_path(i)
        r = reduction(1.0 / ct.orig_to_crop[i, 0, 0], path)  # decode no larger than needed
        M = ct.orig_to_crop[i] @ reduced_to_orig(r)
        inframe = ct.inframe_mask(i)
        out = warp_to_crop(
            read_rgb(path, r), M, cfg.image_size, cfg.pad, cfg.pad_value, False, inframe
        )
        write_image(subject.crop_frame_path(i), out, cfg.jpeg_quality)

    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        for _ in progress(pool.map(one, todo), total=len(todo), desc="crop"):
            pass
    side = ct.box_xyxy[:, 2] - ct.box_xyxy[:, 0]
    margin = face_margin(det["box_xyxy"].astype(np.float64), ct.box_xyxy)
    if np.nanmin(margin, initial=1.0) < 0:
        log.warning(
            "the face reaches outside the crop in %d frames; raise crop.scale or use "
            "crop.mode=smooth",
            int((margin < 0).sum()),
        )
    metrics = {
        "box_accel_px": box_accel_px(ct.box_xyxy, cfg.image_size) if sequence else float("nan"),
        "outside_frac": outside,
        "box_side_px": float(np.median(side)),
        "valid_frac": float(ct.valid.mean()),
        "face_margin_min": float(np.nanmin(margin)) if np.isfinite(margin).any() else 0.0,
    }
    if ctx.logger and n:
        ctx.logger.log_metrics(metrics)
        ctx.logger.log_image("crop/first", read_image(subject.crop_frame_path(0), "rgb"))
    return StageResult(
        n_frames=n, n_skipped=n - len(todo), n_flagged=int((~ct.valid).sum()), metrics=metrics
    )
