"""Stage parsing: per-frame label maps, and the final RGBA images and masks trainers load.

Writes, per face frame i (crop pixels):
    parsing/labels/%06d.png  uint8 BiSeNet 19-class labels (`prep.vision.parsing.LABELS`)
    mask/%06d.png            uint8 final mask = matte, with cloth (16) removed when
                             parsing.mask_clothes (HRAvatar's clothes masking)
    image/%06d.png           RGBA: the crop frame with the final mask as alpha
Pixels outside the original frame (where the crop box left it) are background (label 0, mask 0)
and, with constant crop padding, hold the pad value in image/ exactly.
Frames already written under the same inputs and settings are kept (resume after a kill).
Backends (``parsing=mesh``: MediaPipe mesh + matte heuristics, ``parsing=bisenet``) are the
labeller classes below, built from their settings as ``cls(settings, ctx)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np

from prep.config.backends import instantiate
from prep.config.face import BisenetParsingConfig, MeshParsingConfig
from prep.errors import MissingInputError
from prep.geometry.crop import inframe_reader
from prep.io.files import image_hw, read_image, write_image
from prep.pipeline import StageContext, StageResult, register_stage
from prep.progress import progress
from prep.report import overlay
from prep.resume import outputs_for
from prep.subject import SubjectDir
from prep.vision.landmarks.files import load_dense_mesh
from prep.vision.parsing import LABEL, final_mask

log = logging.getLogger(__name__)


def read_alpha(subject: SubjectDir, i: int, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 matte of frame i (MissingInputError naming stage matting when absent)."""
    path = subject.alpha_path(i)
    if not path.exists():
        raise MissingInputError("matting", path, f"matte of frame {i} is missing")
    alpha = read_image(path, "gray")
    if alpha.shape != hw:
        raise MissingInputError("matting", path, f"matte {path} is {alpha.shape}, frame is {hw}")
    return alpha


def _manifest_digest(subject: SubjectDir, stages: tuple[str, ...]) -> dict[str, str | None]:
    out = {}
    for s in stages:
        p = subject.manifest_path(s)
        out[s] = hashlib.sha1(p.read_bytes()).hexdigest()[:16] if p.exists() else None
    return out


class MeshLabeller:
    """parsing=mesh: labels from the MediaPipe dense mesh and the matte (`MeshParsingConfig`)."""

    def __init__(self, settings: MeshParsingConfig, ctx: StageContext):
        self.settings, self.cfg = settings, ctx.cfg.parsing
        self.dense, self.valid = load_dense_mesh(ctx.subject)

    def labels(self, idx: list[int], rgbs: list[np.ndarray], alphas: list[np.ndarray]) -> list:
        """(H, W) uint8 label maps of frames `idx`, from their RGB crops and mattes."""
        from prep.vision.parsing.mesh import mesh_parsing

        s = self.settings
        return [
            mesh_parsing(
                self.dense[i] if self.valid[i] else None,
                a,
                rgb,
                self.cfg.alpha_threshold,
                s.neck_length,
                s.neck_half_width,
            )
            for i, rgb, a in zip(idx, rgbs, alphas, strict=True)
        ]

    def n_flagged(self, idx: list[int]) -> int:
        """Frames of `idx` labelled without a face mesh (matte regions only)."""
        return int((~self.valid[idx]).sum())


class BisenetLabeller:
    """parsing=bisenet: BiSeNet's labels inside the matte (`BisenetParsingConfig`)."""

    def __init__(self, settings: BisenetParsingConfig, ctx: StageContext):
        from prep.vision.parsing.bisenet import load_bisenet

        self.settings, self.cfg, self.device = settings, ctx.cfg.parsing, ctx.device
        self.net = load_bisenet(ctx.asset("bisenet"), ctx.device)

    def labels(self, idx: list[int], rgbs: list[np.ndarray], alphas: list[np.ndarray]) -> list:
        from prep.vision.parsing.bisenet import parse_images

        maps = parse_images(self.net, rgbs, self.settings.size, self.device)
        fg = [a >= self.cfg.alpha_threshold * 255 for a in alphas]
        return [np.where(f, m, 0).astype(np.uint8) for m, f in zip(maps, fg, strict=True)]

    def n_flagged(self, idx: list[int]) -> int:
        return 0


def outside_frame_cleared(
    inframe: np.ndarray | None, pad_value: int | None, rgb: np.ndarray, *maps: np.ndarray
) -> tuple[np.ndarray, ...]:
    """`rgb` with `pad_value` and each map with 0 where `inframe` is False (the crop's padding;
    JPEG leaves ringing there). `inframe` None: the whole image is the frame."""
    if inframe is None:
        return (rgb, *maps)
    if pad_value is not None:
        rgb = np.where(inframe[..., None], rgb, np.uint8(pad_value))
    return (rgb, *(np.where(inframe, m, 0).astype(m.dtype) for m in maps))


def _batches(todo: list[int], size: int, n: int) -> list[list[int]]:
    """The fixed batches ``[k size, (k+1) size)`` holding a frame of `todo`, whole.

    A network's output can depend on which frames share its batch (BiSeNet's logits differ by
    ~1e-7 between batch sizes on CPU, enough to flip a tied label), so a resumed run labels the
    same batches as an uninterrupted one and writes only the missing frames.
    """
    starts = sorted({i - i % size for i in todo})
    return [list(range(k, min(k + size, n))) for k in starts]


def _done(subject: SubjectDir, i: int) -> bool:
    return all(
        p.exists() for p in (subject.parsing_path(i), subject.mask_path(i), subject.image_path(i))
    )


def _write(subject: SubjectDir, i: int, rgb, alpha, labels, mask_clothes: bool) -> np.ndarray:
    mask = final_mask(alpha, labels, mask_clothes)  # alpha is 0 outside the frame
    write_image(subject.parsing_path(i), labels)
    write_image(subject.mask_path(i), mask)
    write_image(subject.image_path(i), np.dstack([rgb, mask]))
    return np.bincount(labels.ravel(), minlength=len(overlay.LABEL_COLORS))


@register_stage(
    "parsing",
    needs=("landmarks", "matting"),
    config=("parsing",),
    version=2,  # 2: background outside the original frame
    writes=lambda s: [s.parsing_dir, s.mask_dir, s.image_dir],
    assets=lambda cfg: cfg.parsing.backend.assets(),
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg.parsing, ctx.subject
    n = subject.n_frames
    folders = [
        subject.ensure(d) for d in (subject.parsing_dir, subject.mask_dir, subject.image_dir)
    ]
    key = dataclasses.asdict(cfg) | {
        "n": n,
        "inputs": _manifest_digest(subject, ("landmarks", "matting")),
    }
    outputs_for(subject.root / "parsing" / "outputs.json", key, folders, ctx.force)
    todo = [i for i in range(n) if not _done(subject, i)]
    counts = np.zeros(len(overlay.LABEL_COLORS), np.int64)
    labeller = instantiate(cfg.backend, ctx) if todo else None
    missing = set(todo)
    inframe = inframe_reader(subject) if todo else None
    pad = ctx.cfg.crop.pad_value if ctx.cfg.crop.pad == "constant" else None
    for idx in progress(_batches(todo, max(1, cfg.batch_size), n), desc="parsing"):
        assert labeller is not None and inframe is not None  # built since todo is not empty
        rgbs = [read_image(subject.face_frame_path(i), "rgb") for i in idx]
        alphas = [read_alpha(subject, i, image_hw(r)) for i, r in zip(idx, rgbs, strict=True)]
        for i, rgb, a, lab in zip(
            idx, rgbs, alphas, labeller.labels(idx, rgbs, alphas), strict=True
        ):
            if i in missing:
                rgb, a, lab = outside_frame_cleared(inframe(i), pad, rgb, a, lab)
                counts += _write(subject, i, rgb, a, lab, cfg.mask_clothes)
    fg = max(int(counts[1:].sum()), 1)
    metrics = {
        f"frac_{name}": float(counts[LABEL[name]] / fg)
        for name in ("skin", "hair", "neck", "cloth")
    }
    flagged = labeller.n_flagged(todo) if labeller is not None else 0
    if ctx.logger and todo:
        ctx.logger.log_metrics(metrics)
    if cfg.overlay:
        _overlay(subject, n)
    log.info("parsing: %d frames labelled (%d kept from a previous run)", len(todo), n - len(todo))
    return StageResult(
        n_frames=n, n_skipped=n - len(todo), n_flagged=flagged, metrics=metrics if todo else {}
    )


def _overlay(subject: SubjectDir, n: int) -> None:
    """Label colours over the face frames, and the final mask's outline."""

    def render(i: int) -> np.ndarray:
        img = read_image(subject.face_frame_path(i), "rgb")
        labels = read_image(subject.parsing_path(i), "gray")
        mask = read_image(subject.mask_path(i), "gray")
        return overlay.tint_matte(overlay.blend_labels(img, labels, 0.45), mask, (40, 40, 40), 0.6)

    overlay.write_overlays(
        subject.overlay_dir("parsing"), "parsing", n, render, subject.video_fps()
    )
