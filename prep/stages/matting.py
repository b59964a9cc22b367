"""Stage matting: a soft alpha per crop frame, matting/alpha/%06d.png (uint8, 255 = subject).

By default the crop frames are matted. With ``crop.matting_first=true`` (OTAvatar's order) the
full original frame is matted and the alpha is cropped with the same transform as the frame.
Frames are processed in order because temporal smoothing (and RVM's recurrent state) carry across
frames; a resumed run re-runs `matting.warmup` frames before the first missing one, without
writing them, to re-warm that state. Pixels outside the original frame
(`CropTransforms.inframe_mask`) get alpha 0: they are padding, never the subject. In a photo
collection (`prep.datasets.sequence`) nothing carries from one image to the next: no temporal
smoothing, no warm-up, and recurrent backends start afresh on every image.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from prep.datasets.sequence import is_sequence
from prep.geometry.crop import CropTransforms, warp_to_crop
from prep.io.files import read_image, write_image
from prep.pipeline import StageContext, StageResult, register_stage
from prep.progress import progress
from prep.resume import array_digest, manifest_digest, outputs_for
from prep.vision.frames import read_rgb, reduced_to_orig, reduction
from prep.vision.matting import Matter, make_matter
from prep.vision.matting.refine import MattePostprocess

log = logging.getLogger(__name__)


def _plan(done: np.ndarray, warmup: int) -> list[tuple[int, bool]]:
    """(frame, write?) in processing order: missing frames, each run preceded by its warm-up."""
    order: list[tuple[int, bool]] = []
    last = -1
    for i in np.flatnonzero(~done):
        if i != last + 1:
            order += [(j, False) for j in range(max(0, i - warmup, last + 1), i)]
        order.append((int(i), True))
        last = int(i)
    return order


def _alphas(
    ctx: StageContext,
    ct: CropTransforms,
    plan: list[tuple[int, bool]],
    matter: Matter,
    post: MattePostprocess,
    sequence: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame, alpha in crop pixels) for every frame of `plan` to write, in order.

    Warm-up frames are matted (advancing the temporal state) but not yielded; the next frame is
    decoded in a thread while the current one is matted.
    """
    crop_cfg, subject = ctx.cfg.crop, ctx.subject
    first = crop_cfg.matting_first

    def load(i: int) -> tuple[np.ndarray, int]:
        if not first:
            return read_image(subject.crop_frame_path(i), "rgb"), 1
        # Full frames are matted at the largest 1/r size still finer than the crop.
        r = reduction(1.0 / ct.orig_to_crop[i, 0, 0], subject.frame_path(i))
        return read_rgb(subject.frame_path(i), r), r

    if not plan:
        return
    with ThreadPoolExecutor(1) as reader:
        nxt = reader.submit(load, plan[0][0])
        for k, (i, write) in enumerate(plan):
            rgb, r = nxt.result()
            if k + 1 < len(plan):
                nxt = reader.submit(load, plan[k + 1][0])
            if not sequence:
                matter.reset()
            alpha = post(rgb, matter.matte(rgb))
            inframe = ct.inframe_mask(i)
            if first:
                M = ct.orig_to_crop[i] @ reduced_to_orig(r)
                alpha = warp_to_crop(alpha, M, ct.image_size, "constant", 0, False, inframe)
            if write:
                yield i, np.where(inframe, alpha, 0.0)


@register_stage(
    "matting",
    needs=("crop",),
    config=("matting", "sequence"),
    version=2,  # 2: alpha 0 outside the original frame
    writes=lambda s: [s.alpha_dir],
    assets=lambda cfg: cfg.matting.backend.assets(),
)
def run(ctx: StageContext) -> StageResult:
    cfg, crop_cfg, subject = ctx.cfg.matting, ctx.cfg.crop, ctx.subject
    ct = CropTransforms.load(subject)
    n = len(ct.valid)
    key = {
        "cfg": dataclasses.asdict(cfg),
        "crop": array_digest(ct.orig_to_crop),
        "first": crop_cfg.matting_first,
        "pad": crop_cfg.pad,
        "inframe": True,  # alpha 0 outside the frame (version 2)
        "frames": manifest_digest(subject.manifest_path("extract_frames")),
        "crop_frames": manifest_digest(subject.manifest_path("crop")),
    }
    out_dir = subject.ensure(subject.alpha_dir)
    outputs_for(subject.root / "matting" / "alpha.json", key, [out_dir], ctx.force)
    done = np.array([subject.alpha_path(i).exists() for i in range(n)], bool)
    names = cfg.backend.assets()
    weights = ctx.asset(names[0]) if names else None
    sequence = is_sequence(ctx.cfg, subject)
    post = MattePostprocess(
        cfg.refine,
        cfg.guided_radius,
        cfg.guided_eps,
        cfg.temporal if sequence else 0.0,
        cfg.clip_low,
        cfg.clip_high,
        cfg.guided_subsample,
    )
    coverage, flicker, prev = [], [], None
    plan = _plan(done, cfg.warmup if sequence else 0)
    pending: deque[Future] = deque()
    with make_matter(cfg, weights, ctx.device) as matter, ThreadPoolExecutor(1) as writer:
        for i, alpha in progress(
            _alphas(ctx, ct, plan, matter, post, sequence), total=int((~done).sum()), desc="matting"
        ):
            a8 = np.round(alpha * 255).astype(np.uint8)
            pending.append(writer.submit(write_image, subject.alpha_path(i), a8))
            while len(pending) > 4:
                pending.popleft().result()
            coverage.append(float(alpha.mean()))
            if sequence and prev is not None and prev[0] == i - 1:
                flicker.append(float(np.abs(alpha - prev[1]).mean()))
            prev = (i, alpha)
        for f in pending:
            f.result()
    empty = sum(c < 0.01 for c in coverage)
    metrics = {
        "coverage": float(np.mean(coverage)) if coverage else 0.0,
        "flicker": float(np.mean(flicker)) if flicker else 0.0,
        "empty_frames": float(empty),
    }
    if ctx.logger and n:
        ctx.logger.log_metrics(metrics)
        ctx.logger.log_image("matting/first", read_image(subject.alpha_path(0), "rgb"))
    log.info(
        "matting: %d frames written, mean coverage %.2f, flicker %.4f",
        len(coverage),
        metrics["coverage"],
        metrics["flicker"],
    )
    return StageResult(n_frames=n, n_skipped=int(done.sum()), n_flagged=empty, metrics=metrics)
