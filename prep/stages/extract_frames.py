"""Stage extract_frames: a dataset's source -> frames/%06d.<ext>, meta/video.json, audio.wav.

Decoding streams frame by frame; encoding and writing run in a small thread pool (OpenCV's
encoders release the GIL) with a bounded queue, so memory stays flat for any video length.
Every frame is written atomically. A killed run resumes: frames already on disk are kept when
they were written under the same config and source (recorded in ``meta/extract_state.json``),
otherwise the folder is cleared first so outputs of different settings never mix. The source is
checked (`check_source`) before anything is cleared, and cleared frames wait in the runner's
stash until the new extraction has finished: a file that turns out truncated (fewer frames than
its header announces) does not replace a finished extraction without force=true.

INSTA subjects (already cropped and matted RGBA images) also get matting/alpha/, crop/frames/
and an identity crop/crop.npz here, because their plan has no detect/crop/matting stages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from prep.config import Config
from prep.datasets import Source, resolve_source
from prep.datasets.base import Extracted, display_size, load_image
from prep.datasets.checks import check_complete, check_source
from prep.errors import BadConfigError, BadInputError
from prep.io.audio import extract_audio
from prep.io.files import clean_temp_files, read_json, save_npz, write_bytes, write_json
from prep.io.video import VideoInfo, iter_frames, probe
from prep.pipeline import StageContext, StageResult, config_hash, get_stage, register_stage
from prep.progress import progress
from prep.resume import remove_file, remove_files, write_marker
from prep.subject import SubjectDir, frame_stem

log = logging.getLogger(__name__)

STATE_NAME = "extract_state.json"
INSTA_WRITES = ("crop/frames", "crop/crop.npz", "matting/alpha")


def _writes(s: SubjectDir) -> list[Path]:
    """Outputs checked by the engine; INSTA ingests also own the crop and alpha folders."""
    paths = [s.frames_dir, s.video_json, s.audio_wav]
    try:
        extra = read_json(s.video_json).get("ingest_writes", [])
    except (FileNotFoundError, json.JSONDecodeError):
        extra = []
    return paths + [s.root / p for p in extra]


def _subject_name(cfg: Config) -> str:
    from prep.subject import subject_name

    return subject_name(cfg)


def _fingerprint(cfg: Config) -> dict[str, Any]:
    return {"source": resolve_source(cfg, _subject_name(cfg)).fingerprint()}


class FrameSink:
    """Encode + write frames on a thread pool, at most `max_pending` in flight."""

    def __init__(self, workers: int, max_pending: int | None = None):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="encode")
        self.max_pending = max_pending or 2 * max(1, workers) + 2
        self.pending: deque[Future] = deque()

    def submit(self, fn, *args) -> None:
        while len(self.pending) >= self.max_pending:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(fn, *args))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _workers(cfg: Config) -> int:
    """Encoder threads: extract_frames.workers, or every core this process may use when <= 0."""
    n = int(cfg.extract_frames.workers)
    return n if n > 0 else len(os.sched_getaffinity(0))


def _encode_write(path: Path, bgr: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(path.suffix, bgr, params)
    if not ok:
        raise BadInputError(f"could not encode frame {path.name}")
    write_bytes(path, buf.tobytes())


def _ext_params(cfg: Config) -> tuple[str, list[int]]:
    ext = f".{cfg.extract_frames.ext}"
    if ext == ".jpg":
        q = int(cfg.extract_frames.jpeg_quality)
        if not 1 <= q <= 100:
            raise BadConfigError(f"extract_frames.jpeg_quality={q} must be in 1..100")
        return ext, [cv2.IMWRITE_JPEG_QUALITY, q]
    return ext, [cv2.IMWRITE_PNG_COMPRESSION, 1]


def _time_range(cfg: Config, src: Source) -> tuple[float, float | None]:
    """[lo, hi) in source seconds: the dataset's range, narrowed by extract_frames.start_s/end_s."""
    base = src.start_s or 0.0
    lo = base + (cfg.extract_frames.start_s or 0.0)
    his = [
        h
        for h in (src.end_s, base + cfg.extract_frames.end_s if cfg.extract_frames.end_s else None)
        if h
    ]
    hi = min(his) if his else None
    if hi is not None and hi <= lo:
        raise BadConfigError(f"empty time range: start {lo:.3f} s is not before end {hi:.3f} s")
    return lo, hi


def _prepare(subject: SubjectDir, dirs: list[Path], key: str, force: bool) -> tuple[bool, int]:
    """Clear stale outputs (kept aside by the runner until the new ones are ready).

    Returns:
        (whether existing frames may be kept because they were made with the same settings,
        how many frames of other settings were taken away).
    """
    state_path = subject.meta_dir / STATE_NAME
    try:
        same = read_json(state_path).get("key") == key
    except (FileNotFoundError, json.JSONDecodeError):
        same = False
    for d in dirs:
        clean_temp_files(d)
    removed = 0 if same and not force else sum(remove_files(d) for d in dirs)
    write_marker(state_path, {"key": key})
    return same and not force, removed


def _remove_beyond(folder: Path, n: int) -> int:
    """Delete frames with index >= n left by an earlier, longer extraction."""

    def beyond(e: os.DirEntry) -> bool:
        stem = e.name.split(".")[0]
        return stem.isdigit() and int(stem) >= n

    return remove_files(folder, beyond)


def _check_source(cfg: Config, subject: SubjectDir) -> None:
    """Before anything is removed: the source decodes and the frame settings fit it."""
    src = resolve_source(cfg, subject.name)
    _ext_params(cfg)
    _time_range(cfg, src)
    check_source(src)


def _crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Cut box (x0, y0, w, h) out of `img`, padding with black where it leaves the image."""
    x0, y0, w, h = box
    H, W = img.shape[:2]
    out = np.zeros((h, w) + img.shape[2:], img.dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if xb > xa and yb > ya:
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = img[ya:yb, xa:xb]
    return out


def _scaled_box(src: Source, info: VideoInfo) -> tuple[int, int, int, int] | None:
    if src.crop_xywh is None:
        return None
    s = info.height / src.crop_ref_height if src.crop_ref_height else 1.0
    x, y, w, h = (int(round(v * s)) for v in src.crop_xywh)
    box = (x, y, w, h)
    if s != 1.0:
        log.info(
            "crop box %s annotated at %dp scaled to %s", src.crop_xywh, src.crop_ref_height, box
        )
    return box


def _extract_video(ctx: StageContext, src: Source, ext, params, keep: bool) -> Extracted:
    cfg, subject = ctx.cfg, ctx.subject
    info = probe(src.path)  # the video file (src.kind is video)
    lo, hi = _time_range(cfg, src)
    box = _scaled_box(src, info)
    path_of = lambda i: subject.frames_dir / f"{frame_stem(i)}{ext}"  # noqa: E731
    skip = (lambda i: path_of(i).exists()) if keep else None
    frames = iter_frames(
        src.path,
        cfg.extract_frames.fps,
        lo,
        hi,
        cfg.extract_frames.max_frames,
        skip=skip,
        pix_fmt="bgr24",
    )
    ts, n_skipped, size = [], 0, None
    sink = FrameSink(_workers(cfg))
    try:
        expect = _expected(info, cfg, lo, hi)
        for fr in progress(frames, total=expect, desc="extract_frames"):
            ts.append(fr.pts_s - lo)  # on the clip clock: frame 0 and audio.wav start at 0
            if fr.rgb is None:
                n_skipped += 1
                continue
            bgr = _crop(fr.rgb, box) if box else fr.rgb
            size = bgr.shape[1], bgr.shape[0]
            sink.submit(_encode_write, path_of(fr.index), bgr, params)
    finally:
        sink.close()
    if size is None:  # every frame was already on disk
        size = (box[2], box[3]) if box else (info.width, info.height)
    return Extracted(ts, n_skipped, size, lo, hi, box, info)


def _expected(info: VideoInfo, cfg: Config, lo: float, hi: float | None) -> int | None:
    """Rough frame count for the progress bar only (headers are not trusted otherwise)."""
    if not info.duration_s:
        return None
    span = min(hi or info.duration_s, info.duration_s) - lo
    n = int(span * (cfg.extract_frames.fps or info.fps or 0))
    return min(n, cfg.extract_frames.max_frames) if cfg.extract_frames.max_frames else n


def _write_image_frame(subject, i, path, src, ext, params, frame_out) -> None:
    img = load_image(path, src.alpha)
    bgr = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2BGR)
    _encode_write(frame_out, bgr, params)
    if src.alpha:
        _encode_write(subject.alpha_path(i), np.ascontiguousarray(img[..., 3]), [])
    if src.provides_crop:
        _encode_write(subject.crop_frame_path(i), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])


def _extract_images(ctx: StageContext, src: Source, ext, params, keep: bool) -> Extracted:
    cfg, subject = ctx.cfg, ctx.subject
    rate = float(cfg.extract_frames.image_fps)
    if cfg.extract_frames.fps:
        log.warning(
            "extract_frames.fps=%s ignored: image folders are taken frame by frame",
            cfg.extract_frames.fps,
        )
    lo, hi = _time_range(cfg, src)
    images = [(i, p) for i, p in enumerate(src.images) if lo <= i / rate < (hi or np.inf)]
    images = images[: cfg.extract_frames.max_frames] if cfg.extract_frames.max_frames else images
    if not images:
        raise BadInputError(f"no images of {src.path} fall in the time range [{lo}, {hi}) s")
    out_dirs = [subject.frames_dir] + ([subject.alpha_dir] if src.alpha else [])
    out_dirs += [subject.crop_dir] if src.provides_crop else []
    for d in out_dirs:
        subject.ensure(d)
    n_skipped = 0
    sink = FrameSink(_workers(cfg))
    try:
        for j, (_, p) in enumerate(progress(images, desc="extract_frames")):
            out = subject.frames_dir / f"{frame_stem(j)}{ext}"
            done = out.exists() and (not src.alpha or subject.alpha_path(j).exists())
            if keep and done and (not src.provides_crop or subject.crop_frame_path(j).exists()):
                n_skipped += 1
                continue
            sink.submit(_write_image_frame, subject, j, p, src, ext, params, out)
    finally:
        sink.close()
    w, h = display_size(images[0][1])
    ts = [(i / rate) - lo for i, _ in images]
    return Extracted(ts, n_skipped, (w, h), lo, hi, fps=rate)


def _write_identity_crop(subject: SubjectDir, n: int, size: tuple[int, int]) -> None:
    """crop/crop.npz for frames that already are the crop: identity transforms."""
    w, h = size
    eye = np.repeat(np.eye(3, dtype=np.float64)[None], n, axis=0)
    save_npz(
        subject.crop_npz,
        orig_to_crop=eye,
        crop_to_orig=eye.copy(),
        # Whole-image box under the pixel-centres-at-integers convention of prep.geometry.crop.
        box_xyxy=np.tile(np.array([-0.5, -0.5, w - 0.5, h - 0.5], np.float32), (n, 1)),
        image_size=np.array(h if h == w else (h, w), np.int64),
        valid=np.ones(n, bool),
    )


def _state_key(cfg: Config, src: Source) -> str:
    """Identifies the settings the frames on disk were made with."""
    stage_hash = config_hash(cfg, get_stage("extract_frames"))
    text = json.dumps([stage_hash, src.fingerprint()], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _audio(ctx: StageContext, src: Source, res: Extracted) -> dict | None:
    info = res.info
    remove_file(ctx.subject.audio_wav)
    if not ctx.cfg.extract_frames.audio or info is None or info.audio is None:
        return None
    # Audio covers exactly the frames kept: from start to one frame after the last timestamp.
    fps = ctx.cfg.extract_frames.fps or info.fps or 25.0
    end = res.start_s + res.timestamps_s[-1] + 1.0 / fps
    end = min(end, res.end_s) if res.end_s else end
    a = extract_audio(
        src.path, ctx.subject.audio_wav, ctx.cfg.extract_frames.audio_rate, res.start_s, end
    )
    if a is None:
        return None
    return {
        "path": "audio.wav",
        "sample_rate": a.sample_rate,
        "channels": a.channels,
        "duration_s": a.duration_s,
        "source_codec": info.audio.codec,
    }


def _meta(ctx: StageContext, src: Source, res: Extracted, ext: str, audio) -> dict:
    info = res.info
    n = len(res.timestamps_s)
    fps = res.fps or ctx.cfg.extract_frames.fps or (info.fps if info else None)
    w, h = res.size_wh
    return {
        "fps": fps,
        "width": w,
        "height": h,
        "n_frames": n,
        "frame_ext": ext,
        "rotation_deg": info.rotation_deg if info else 0,
        "timestamps_s": [round(t, 6) for t in res.timestamps_s],
        "source_start_s": res.start_s,
        "source_end_s": res.end_s,
        "crop_xywh": list(res.box_xywh) if res.box_xywh else None,
        "intrinsics": vars(src.intrinsics) if src.intrinsics else None,
        "source": {**src.describe(), "fingerprint": src.fingerprint()},
        "probe": info.to_json() if info else None,
        "audio": audio,
        "ingest_writes": list(INSTA_WRITES) if src.provides_crop else [],
    }


@register_stage(
    "extract_frames",
    needs=(),
    config=("extract_frames", "dataset"),
    version=1,
    writes=_writes,
    fingerprint=_fingerprint,
    check=_check_source,
)
def run(ctx: StageContext) -> StageResult:
    """Decode the subject's source into frames/, meta/video.json and audio.wav."""
    started = time.perf_counter()
    subject = ctx.subject
    src = resolve_source(ctx.cfg, subject.name)
    ext, params = _ext_params(ctx.cfg)
    dirs = [subject.frames_dir]
    dirs += [subject.alpha_dir, subject.crop_dir] if src.provides_crop else []
    keep, replaced = _prepare(subject, dirs, _state_key(ctx.cfg, src), ctx.force)
    subject.ensure(subject.frames_dir)
    if src.kind == "video":
        res = _extract_video(ctx, src, ext, params, keep)
        check_complete(ctx.cfg, res, replaced, ctx.force)
    else:
        res = _extract_images(ctx, src, ext, params, keep)
    n = len(res.timestamps_s)
    for d in dirs:
        _remove_beyond(d, n)
    if src.provides_crop:
        _write_identity_crop(subject, n, res.size_wh)
    audio = _audio(ctx, src, res)
    write_json(subject.video_json, _meta(ctx, src, res, ext, audio))
    subject.__dict__.pop("frame_ext", None)  # cached from an earlier meta/video.json
    seconds = time.perf_counter() - started
    written = n - res.n_skipped
    log.info(
        "extract_frames: %d frames (%d kept from a previous run) in %.1f s",
        n,
        res.n_skipped,
        seconds,
    )
    return StageResult(
        n_frames=n,
        n_skipped=res.n_skipped,
        metrics={"n_frames": float(n), "write_fps": written / seconds if seconds > 0 else 0.0},
    )
