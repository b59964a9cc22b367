"""Stage landmarks: 68 iBUG points (+ dense MediaPipe mesh) per crop frame, and keypoint.json.

Reads crop/frames (or, for datasets whose ingest already cropped, frames/) and writes
landmarks/landmarks.npz with keys (T frames):
    frame_names (T,) str           image names ("000000.png", as in image/ and keypoint.json)
    points_px (T,68,2) float32     crop pixels, smoothed when landmarks.smooth; NaN where missing
    points_raw_px (T,68,2)         the detector's points before the temporal filter
    scores (T,68) float32          per-point confidence (0 on invalid or interpolated frames)
    valid (T,) bool                a face was detected in this frame
    interpolated (T,) bool         not detected, bridged from neighbours (gap <= max_gap)
    reason (T,) str                "" | no_face | unreadable_frame
    dense_px (T,478,3) float32     MediaPipe mesh (x, y px, z), mediapipe backend only
    image_hw (2,) int, backend str, fps float
and landmarks/keypoint.json ``{"000000.png": [[x, y] x 68], ...}`` (IMAvatar layout) for every
valid or bridged frame. With another backend, MediaPipe runs once more for the dense mesh that
iris and mesh parsing need: landmarks/dense.npz (``dense_px``, ``valid``; read with
`prep.vision.landmarks.files.load_dense_mesh`). Pixel convention: OpenCV, pixel centres at integer
coordinates.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from prep.config.face import LandmarksConfig, MediapipeLandmarksConfig
from prep.datasets.sequence import is_sequence
from prep.errors import NoUsableFramesError
from prep.geometry.crop import CropTransforms
from prep.io.files import load_npz, read_image, save_npz, write_json
from prep.pipeline import StageContext, StageResult, register_stage
from prep.progress import progress
from prep.report import overlay
from prep.resume import ChunkStore, frame_chunks, manifest_digest, outputs_for
from prep.subject import SubjectDir, frame_stem
from prep.vision.landmarks import LandmarkResult, make_backend
from prep.vision.landmarks.filter import inter_ocular_px, one_euro
from prep.vision.landmarks.metrics import (
    bridge_midpoint_rms_px,
    lag_frames,
    mean_deviation_px,
    window_by_speed,
)

log = logging.getLogger(__name__)


# ---- helpers shared by the landmarks, iris and parsing stages --------------------------------


def orig_to_crop(subject: SubjectDir, n: int) -> np.ndarray:
    """(T, 3, 3) maps original-frame pixels to face-frame pixels (identity when uncropped)."""
    if subject.crop_npz.exists() and subject.crop_dir.is_dir():
        return CropTransforms.load(subject).orig_to_crop
    return np.repeat(np.eye(3)[None], n, axis=0)


def face_boxes_crop(subject: SubjectDir, n: int) -> np.ndarray | None:
    """(T, 4) detect-stage face boxes mapped into face-frame pixels (NaN where invalid)."""
    if not subject.detections.exists():
        return None
    det = load_npz(subject.detections)
    box, ok = det["box_xyxy"].astype(np.float64), det["valid"].astype(bool)
    x0, y0, x1, y1 = box.T
    corners = np.stack(
        [
            np.stack([x0, y0], 1),
            np.stack([x1, y0], 1),
            np.stack([x0, y1], 1),
            np.stack([x1, y1], 1),
        ],
        axis=1,
    )  # (T, 4, 2)
    m = orig_to_crop(subject, n)
    pts = np.einsum("tij,tkj->tki", m[:, :2, :2], corners) + m[:, None, :2, 2]
    out = np.concatenate([pts.min(1), pts.max(1)], axis=1)
    out[~ok] = np.nan
    return out


def bridge_gaps(
    points: np.ndarray, valid: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate interior gaps of at most `max_gap` invalid frames.

    Args:
        points: (T, ...) per-frame arrays (NaN where invalid).
        valid: (T,) bool.
        max_gap: longest gap bridged.

    Returns:
        (points with bridged frames filled, (T,) bool bridged mask).
    """
    out = points.copy()
    bridged = np.zeros(len(valid), bool)
    idx = np.flatnonzero(valid)
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        gap = b - a - 1
        if 0 < gap <= max_gap:
            w = (np.arange(1, gap + 1) / (gap + 1)).reshape(-1, *([1] * (points.ndim - 1)))
            out[a + 1 : b] = (1 - w) * points[a] + w * points[b]
            bridged[a + 1 : b] = True
    return out, bridged


# ---- the stage ----------------------------------------------------------------------------------


def landmarks_config(ctx: StageContext) -> LandmarksConfig:
    """landmarks.* for this subject: a photo collection (`prep.datasets.sequence`) detects every
    image afresh (`LandmarksBackend.for_input`) and has no temporal filter or bridging."""
    cfg = ctx.cfg.landmarks
    sequence = is_sequence(ctx.cfg, ctx.subject)
    cfg = dataclasses.replace(cfg, backend=cfg.backend.for_input(sequence))
    return cfg if sequence else dataclasses.replace(cfg, smooth=False, max_gap=0)


def _detect_all(ctx: StageContext, n: int) -> tuple[dict[str, np.ndarray], int]:
    cfg, subject = landmarks_config(ctx), ctx.subject
    chunks = subject.ensure(subject.landmarks_dir / "chunks")
    key = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("smooth", "min_cutoff_hz", "beta", "d_cutoff_hz", "overlay", "max_gap")
    }
    key |= {"n": n, "crop": manifest_digest(subject.manifest_path("crop"))}  # the images
    outputs_for(subject.landmarks_dir / "chunks.json", key, [chunks], ctx.force)
    store = ChunkStore(chunks)
    todo = list(frame_chunks(n, cfg.chunk, done=store.has))
    boxes = face_boxes_crop(subject, n) if cfg.backend.needs_boxes else None
    warm = cfg.backend.warmup_frames()  # frames re-tracked before each chunk (exact resume)
    if todo:
        names = cfg.backend.assets()
        backend = make_backend(cfg, ctx.asset(names[0]) if names else None, ctx.device)
        with backend:
            for i0, i1 in progress(todo, desc="landmarks"):
                w0 = max(0, i0 - warm)  # the same warm-up frames in every run: exact resume
                paths = [subject.face_frame_path(i) for i in range(w0, i1)]
                res = backend.detect(paths, None if boxes is None else boxes[w0:i1])
                store.write(i0, i1, **{k: a[i0 - w0 :] for k, a in res.to_arrays().items()})
    n_done = n - sum(i1 - i0 for i0, i1 in todo)
    return store.merge(n), n_done


def _px(value: float) -> str:
    """A length for the log line: "n/a" where the input cannot define it (one photo)."""
    return f"{value:.3f} px" if np.isfinite(value) else "n/a"


def _metrics(raw: np.ndarray, smooth: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Track quality; a metric is NaN where the input cannot define it (a single photo has no
    jitter, isolated detections have no lag)."""
    still = window_by_speed(raw, valid, 50, fastest=False)
    fast = window_by_speed(raw, valid, 25, fastest=True)
    return {
        "valid_frac": float(valid.mean()),
        "bridge_midpoint_rms_raw_px": bridge_midpoint_rms_px(raw[still], valid[still]),
        "bridge_midpoint_rms_px": bridge_midpoint_rms_px(smooth[still], valid[still]),
        "fast_lag_frames": lag_frames(raw[fast], smooth[fast]),
        "fast_dev_px": mean_deviation_px(raw[fast], smooth[fast]),
    }


def _overlay(subject: SubjectDir, raw: np.ndarray, points: np.ndarray, fps: float) -> None:
    """Raw detections (red) and the final, filtered points (green) over the face frames."""

    def render(i: int) -> np.ndarray:
        img = read_image(subject.face_frame_path(i), "rgb")
        img = overlay.draw_points(img, raw[i], overlay.RED, 1.5)
        return overlay.draw_landmarks68(img, points[i], overlay.GREEN, 1.2)

    overlay.write_overlays(subject.overlay_dir("landmarks"), "landmarks", len(points), render, fps)


def _write_dense_mesh(subject: SubjectDir, sequence: bool, res: LandmarkResult) -> None:
    """landmarks/dense.npz: the MediaPipe mesh for iris and mesh parsing, when the backend gave
    none (MediaPipe's own is in landmarks.npz)."""
    if res.dense_px is not None:
        subject.dense_npz.unlink(missing_ok=True)
        return
    from prep.vision.landmarks.mediapipe_backend import MediapipeLandmarks

    settings = MediapipeLandmarksConfig().for_input(sequence)  # the mesh is MediaPipe's
    with MediapipeLandmarks(settings) as backend:
        mesh = backend.detect([subject.face_frame_path(i) for i in range(subject.n_frames)])
    save_npz(subject.dense_npz, dense_px=mesh.dense_px, valid=mesh.valid)


@register_stage(
    "landmarks",
    needs=("crop",),
    config=("landmarks", "sequence"),
    version=3,  # 2: chunks from a reset tracker after a warm-up; 3: dense.npz is this stage's
    writes=lambda s: [s.landmarks_npz, s.keypoint_json, s.dense_npz],
    assets=lambda cfg: cfg.landmarks.backend.assets(),
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = landmarks_config(ctx), ctx.subject
    n = subject.n_frames
    arrays, n_skipped = _detect_all(ctx, n)
    res = LandmarkResult.from_arrays(arrays)
    if not res.valid.any():
        raise NoUsableFramesError(f"no face found in any of {n} frames of {subject.root}")
    fps = subject.video_fps()
    raw = res.points_px
    smooth = (
        one_euro(
            raw, res.valid, fps, cfg.min_cutoff_hz, cfg.beta, cfg.d_cutoff_hz, inter_ocular_px(raw)
        )
        if cfg.smooth
        else raw.copy()
    )
    points, bridged = bridge_gaps(smooth, res.valid, cfg.max_gap)
    names = np.array([f"{frame_stem(i)}.png" for i in range(n)])
    hw = read_image(subject.face_frame_path(0), "rgb").shape[:2]
    out = res.to_arrays() | {
        "frame_names": names,
        "points_px": points,
        "points_raw_px": raw,
        "interpolated": bridged,
        "image_hw": np.asarray(hw),
        "backend": np.asarray(cfg.backend.name),
        "fps": np.asarray(fps),
    }
    save_npz(subject.landmarks_npz, **out)
    usable = res.valid | bridged
    write_json(
        subject.keypoint_json,
        {str(nm): np.round(points[i], 3).tolist() for i, nm in enumerate(names) if usable[i]},
        indent=None,
    )
    sequence = is_sequence(ctx.cfg, subject)
    _write_dense_mesh(subject, sequence, res)
    if sequence:
        metrics = _metrics(raw, smooth, res.valid) | {"bridged": float(bridged.sum())}
        track = (
            f", nose-bridge jitter {_px(metrics['bridge_midpoint_rms_px'])}"
            f" (raw {_px(metrics['bridge_midpoint_rms_raw_px'])})"
        )
    else:  # unrelated photos: no track to measure
        metrics, track = {"valid_frac": float(res.valid.mean())}, " (photo collection)"
    if ctx.logger:
        ctx.logger.log_metrics(metrics)
    if cfg.overlay:
        _overlay(subject, raw, points, fps)
    log.info(
        "landmarks: %d/%d frames with a face, %d bridged%s",
        int(res.valid.sum()),
        n,
        int(bridged.sum()),
        track,
    )
    return StageResult(
        n_frames=n, n_skipped=n_skipped, n_flagged=int((~res.valid).sum()), metrics=metrics
    )
