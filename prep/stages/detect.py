"""Stage detect: every face of every frame, then one box per frame for the subject.

Candidates are written per chunk (detect/chunks/) so a killed run resumes; the subject track
(`prep.vision.detect.track_subject`) is computed from all of them and written to
detect/detections.npz (keys in `prep.vision.detect`). Each chunk also holds how alike each frame
is to the one before (`prep.datasets.sequence`), from which an image folder is judged a sequence
or a photo collection (detections.npz ``sequence``, ``pair_ncc``); in a collection every image's
largest face is its subject and nothing is carried between images.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from prep.datasets.sequence import declared_sequence, judge, pair_similarity, thumbnail
from prep.errors import BadInputError
from prep.io.files import image_hw, save_npz
from prep.pipeline import StageContext, StageResult, register_stage
from prep.progress import progress
from prep.resume import ChunkStore, frame_chunks, manifest_digest, outputs_for
from prep.vision.detect import box_centre, box_side, largest_face_per_image, track_subject
from prep.vision.detect_backends import N_KPS, FaceCandidates, make_detector
from prep.vision.frames import read_rgb, reduction

log = logging.getLogger(__name__)

MAX_FACES = 8  # candidates kept per frame (largest first)
SMALL_FACE_PX = 100  # faces narrower than this (source pixels) are upscaled by most crop sizes


def _pad(c: FaceCandidates) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    order = np.argsort(
        -(c.box_xyxy[:, 2] - c.box_xyxy[:, 0]) * (c.box_xyxy[:, 3] - c.box_xyxy[:, 1])
    )
    order = order[:MAX_FACES]
    n = len(order)
    box = np.full((MAX_FACES, 4), np.nan, np.float32)
    score = np.zeros(MAX_FACES, np.float32)
    kps = np.full((MAX_FACES, N_KPS, 2), np.nan, np.float32)
    box[:n], score[:n], kps[:n] = c.box_xyxy[order], c.score[order], c.kps_px[order]
    return box, score, kps, n


def _reduction(ctx: StageContext, hw: tuple[int, int]) -> int:
    """Decode reduction for frames larger than detect.max_side (see `prep.vision.frames`)."""
    return reduction(max(hw) / ctx.cfg.detect.max_side, ctx.subject.frame_path(0))


def _read_frame(ctx: StageContext, i: int, hw: tuple[int, int] | None, r: int = 1) -> np.ndarray:
    """Frame `i` as RGB, decoded at 1/r size; checks it has the size of frame 0."""
    path = ctx.subject.frame_path(i)
    try:
        img = read_rgb(path, r)
    except FileNotFoundError as e:
        raise BadInputError(
            f"frame {path} is missing or unreadable; re-run stage=extract_frames"
        ) from e
    if hw is not None and img.shape[:2] != tuple(-(-v // r) for v in hw):
        raise BadInputError(f"frame {path} does not have the size of frame 0 ({hw[1]}x{hw[0]})")
    return img


def _detect(det, img: np.ndarray, r: int) -> FaceCandidates:
    """Candidates in full-resolution pixels of a frame decoded at 1/r size."""
    found = det.detect(img)
    if r > 1:  # pixel-centre convention: x = r (x_r + 0.5) - 0.5
        found.box_xyxy = (found.box_xyxy + 0.5) * r - 0.5
        found.kps_px = (found.kps_px + 0.5) * r - 0.5
    return found


def _where(box: np.ndarray) -> str:
    cx, cy = box_centre(box)
    return f"at ({cx:.0f}, {cy:.0f}), {box_side(box):.0f} px wide"


def face_notes(track, boxes: np.ndarray, crop_cfg, sequence: bool = True) -> list[str]:
    """What a user should know about the faces found: which one of several is followed, and
    whether the face is so small that the crop must upscale it a lot.

    Args:
        track: the subject's `DetectionTrack`.
        boxes: (T, MAX_FACES, 4) candidates per frame (largest first, NaN rows unused).
        crop_cfg: the crop settings (image_size, scale, increase_area) the crop stage will use.
        sequence: frames of a video (one subject followed) rather than a photo collection
            (the largest face of each image).
    """
    notes = []
    chosen = np.flatnonzero((track.n_faces > 1) & (track.reason == "ok"))
    t = int(chosen[0]) if len(chosen) else -1
    others = [b for b in boxes[t] if np.isfinite(b).all() and not np.allclose(b, track.box_xyxy[t])]
    if len(chosen) and others:
        side = (
            "larger"
            if box_side(track.box_xyxy[t]) >= max(box_side(b) for b in others)
            else "smaller"
        )
        how = "following one subject" if sequence else "using the largest face of each image"
        notes.append(
            f"{len(chosen)} of {len(track)} frames show {int(track.n_faces.max())} faces; {how}, "
            f"the {side} face {_where(track.box_xyxy[t])} in frame {t} "
            f"(ignored: {'; '.join(_where(b) for b in others[:3])}); see detect/detections.npz"
        )
    sides = box_side(track.box_xyxy[track.valid])
    if len(sides):
        face_px = float(np.median(sides))
        crop_px = face_px * crop_cfg.scale * (1.0 + crop_cfg.increase_area)
        upscale = crop_cfg.image_size / max(crop_px, 1.0)
        if face_px < SMALL_FACE_PX and upscale >= 2.0:
            notes.append(
                f"the face is only about {face_px:.0f} px wide in the source: the "
                f"{crop_cfg.image_size} px crop upscales it {upscale:.1f}x, so crops, mattes and "
                "landmarks will be soft; use a sharper source or a smaller crop.image_size"
            )
    return notes


@register_stage(
    "detect",
    needs=("extract_frames",),
    config=("detect", "sequence"),
    version=2,  # 2: sequence or photo collection (detections.npz sequence, pair_ncc)
    writes=lambda s: [s.detections],
    assets=lambda cfg: cfg.detect.backend.assets(),
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg.detect, ctx.subject
    n = subject.n_frames
    chunks = subject.ensure(subject.detect_dir / "chunks")
    key = dataclasses.asdict(cfg) | {
        "n": n,
        "pair_ncc": True,  # chunks hold the consecutive-frame similarity (version 2)
        "frames": manifest_digest(subject.manifest_path("extract_frames")),
    }
    outputs_for(subject.detect_dir / "chunks.json", key, [chunks], ctx.force)
    store = ChunkStore(chunks)
    hw = image_hw(_read_frame(ctx, 0, None)) if n else (0, 0)
    todo = list(frame_chunks(n, cfg.chunk, done=store.has))
    n_skipped = n - sum(i1 - i0 for i0, i1 in todo)
    r = _reduction(ctx, hw) if n else 1
    if todo:
        with make_detector(cfg) as det:
            for i0, i1 in progress(todo, desc="detect"):
                rows, thumbs = [], []
                for i in range(i0, i1):
                    img = _read_frame(ctx, i, hw, r)
                    rows.append(_pad(_detect(det, img, r)))
                    thumbs.append(thumbnail(img))
                box, score, kps, count = (np.stack(x) for x in zip(*rows, strict=True))
                prev = thumbnail(_read_frame(ctx, i0 - 1, hw, r)) if i0 else None
                store.write(
                    i0,
                    i1,
                    box=box,
                    score=score,
                    kps=kps,
                    count=count.astype(np.int32),
                    pair_ncc=pair_similarity(np.stack(thumbs), prev),
                )
    raw = store.merge(n)
    sequence, how = judge(ctx.cfg, raw["pair_ncc"]) if n else (True, "")
    if declared_sequence(ctx.cfg.dataset) is None:
        log.info("detect: %s", how)
    pick = track_subject if sequence else largest_face_per_image
    track = pick(raw["box"], raw["score"], raw["kps"], raw["count"], cfg)
    save_npz(
        subject.detections,
        frame_names=np.asarray(subject.frame_names(), dtype=str),
        image_hw=np.asarray(hw),
        backend=np.asarray(cfg.backend.name),
        sequence=np.asarray(sequence),
        pair_ncc=raw["pair_ncc"],
        **track.to_arrays(),
    )
    n_ok = int((track.reason == "ok").sum())
    metrics = {
        "detected_frac": n_ok / max(n, 1),
        "valid_frac": float(track.valid.mean()) if n else 0.0,
        "interpolated": float(track.interpolated.sum()),
        "multi_face_frames": float((track.n_faces > 1).sum()),
        "mean_score": float(track.score[track.reason == "ok"].mean()) if n_ok else 0.0,
    }
    for line in face_notes(track, raw["box"], ctx.cfg.crop, sequence):
        log.warning("detect: %s", line)
    if n and metrics["valid_frac"] < 0.9:
        log.warning(
            "detect: only %.0f%% of frames have a usable face (reasons in %s)",
            100 * metrics["valid_frac"],
            subject.detections,
        )
    if ctx.logger:
        ctx.logger.log_metrics(metrics)
    log.info(
        "detect: %d/%d frames detected, %d interpolated, %d invalid",
        n_ok,
        n,
        int(track.interpolated.sum()),
        int((~track.valid).sum()),
    )
    return StageResult(n_frames=n, n_skipped=n_skipped, n_flagged=n - n_ok, metrics=metrics)
