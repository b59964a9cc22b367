"""Stage pack_lmdb: the subject as one video of a PIRenderer/OTAvatar LMDB (lmdb/<size>/).

One database per size in ``pack_lmdb.sizes`` (PIRender trains at 256, OTAvatar opens
``<path>/512``), the video named in both list files by default (PIRender's inference reads
test_list.txt). Keys
and values are those of `prep.export.lmdb`; per frame i of the face frames: keypoint = the 68
landmarks in pixels of the stored size x size JPEG (invalid frames interpolated), coeff_3dmm =
the coarse 257 coefficients + crop [s, t0, t1] (the last three of Deep3DFaceRecon's five
alignment parameters) for the stored frames, condition = [-euler, trans, focal] of the fine fit
(focal in pixels of the stored frames), id = the fine identity (1, n_id: 80 with the front model,
100 with bfm.variant=adnerf, which OTAvatar_processing uses and OTAvatar expects).
"""

from __future__ import annotations

import logging

import numpy as np

from prep.errors import BadConfigError, BadInputError, MissingInputError
from prep.export.info import write_export_info
from prep.export.lmdb import LmdbVideo, crop_params_at_size, write_lmdb
from prep.io.files import load_npz, read_image
from prep.pipeline import StageContext, StageResult, register_stage
from prep.track.bfm_inputs import interpolate_invalid

log = logging.getLogger(__name__)


def _load(path, stage: str) -> dict[str, np.ndarray]:
    if not path.exists():
        raise MissingInputError(stage, path)
    return load_npz(path)


OTAVATAR_ID, OTAVATAR_FOCAL_512 = 100, 1100.0  # OTAvatar_processing: AD-NeRF id basis, focal 1100


def build_video(ctx: StageContext, size: int) -> LmdbVideo:
    """Assemble the arrays of this subject's video at ``size`` (frames streamed lazily)."""

    subject = ctx.subject
    lm = _load(subject.landmarks_npz, "landmarks")
    coarse = _load(subject.bfm_coarse, "fit_3dmm_coarse")
    fine = _load(subject.bfm_fine, "fit_3dmm_fine")
    T = len(coarse["coeff"])
    if len(lm["points_px"]) != T or len(fine["euler"]) != T:
        raise BadInputError(
            f"frame counts differ: landmarks {len(lm['points_px'])}, coarse {T}, fine "
            f"{len(fine['euler'])}; re-run stage=fit_3dmm_coarse force=true"
        )
    h, w = (int(v) for v in lm["image_hw"])
    pts = lm["points_px"].astype(np.float64)
    ok = np.isfinite(pts).all(axis=(1, 2))
    if not ok.any():
        raise BadInputError(f"{subject.landmarks_npz}: no frame has landmarks")
    pts = interpolate_invalid(np.where(ok[:, None, None], pts, 0.0), ok)
    keypoint = np.stack(
        [(pts[..., 0] + 0.5) * size / w - 0.5, (pts[..., 1] + 0.5) * size / h - 0.5], -1
    )
    crop = crop_params_at_size(coarse["trans_params"], size)
    coeff = np.concatenate([coarse["coeff"][:, :257], crop], 1)
    focal = float(np.asarray(fine["focal"]).reshape(-1)[0]) * size / w
    condition = np.concatenate([-fine["euler"], fine["trans"], np.full((T, 1), focal)], 1)
    name = ctx.cfg.pack_lmdb.video_name or subject.name
    frames = (read_image(subject.face_frame_path(i)) for i in range(T))
    return LmdbVideo(
        name=name,
        frames=frames,
        keypoint=keypoint.astype(np.float32),
        coeff_3dmm=coeff.astype(np.float32),
        condition=condition.astype(np.float32),
        id=fine["id"].reshape(1, -1).astype(np.float32),
    )


def _written(subject) -> list:
    """The split lists' folder and every packed size folder (a deleted DB re-runs the stage)."""
    sizes = sorted(p for p in subject.lmdb_dir.glob("[0-9]*") if p.is_dir())
    return [subject.lmdb_dir, *sizes]


@register_stage(
    "pack_lmdb",
    needs=("fit_3dmm_coarse", "fit_3dmm_fine"),
    config=("pack_lmdb",),
    version=1,
    writes=lambda s: _written(s),
)
def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg.pack_lmdb
    if not cfg.sizes:
        raise BadConfigError("pack_lmdb.sizes is empty; PIRender reads 256, OTAvatar 512")
    for size in cfg.sizes:
        if size not in (256, 512):
            log.warning("pack_lmdb.sizes has %d: PIRender reads 256, OTAvatar 512", size)
    notes = _otavatar_notes(ctx)
    total_mb, n = 0.0, 0
    for size in cfg.sizes:
        video = build_video(ctx, size)
        names = [video.name]
        splits = {s: names if cfg.split in (s, "both") else [] for s in ("train", "test")}
        target = write_lmdb(
            ctx.subject.lmdb_dir,
            [video],
            size=size,
            splits=splits,
            force=ctx.force,
            map_size=int(cfg.map_size_gb * 2**30),
            jpeg_quality=cfg.jpeg_quality,
        )
        n = len(video.coeff_3dmm)
        size_mb = sum(p.stat().st_size for p in target.iterdir()) / 2**20
        total_mb += size_mb
        log.info("pack_lmdb: %d frames of %s -> %s (%.1f MiB)", n, video.name, target, size_mb)
    write_export_info(
        ctx.subject.lmdb_dir,
        "lmdb",
        f"bfm-{ctx.cfg.bfm.variant}",
        notes,
        n_frames=n,
        sizes=list(cfg.sizes),
    )
    return StageResult(n_frames=n, metrics={"lmdb_mib": total_mb})


def _otavatar_notes(ctx: StageContext) -> list[str]:
    """Where OTAvatar's assumptions are not met (it still loads the database)."""
    fine = _load(ctx.subject.bfm_fine, "fit_3dmm_fine")
    notes = []
    n_id = fine["id"].shape[-1]
    if n_id != OTAVATAR_ID:
        notes.append(
            f"pack_lmdb: id has {n_id} coefficients (the {ctx.cfg.bfm.variant} basis); "
            f"OTAvatar expects AD-NeRF's {OTAVATAR_ID}: bfm.variant=adnerf"
        )
    w = float(np.asarray(fine["image_size"]).reshape(-1)[-1]) if "image_size" in fine else 512.0
    focal_512 = float(np.asarray(fine["focal"]).reshape(-1)[0]) * 512.0 / w
    if abs(focal_512 / OTAVATAR_FOCAL_512 - 1) > 0.1:
        notes.append(
            f"pack_lmdb: fine focal {focal_512:.0f} px at 512; OTAvatar's camera assumes "
            "the 1100 its processing fixes "
            "(fit_3dmm_fine.focal_mode=fixed fit_3dmm_fine.focal=1100)"
        )
    return notes
