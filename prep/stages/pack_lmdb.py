"""Stage pack_lmdb: the subject as one video of a PIRenderer/OTAvatar LMDB (lmdb/<size>/).

Keys and values are those of `prep.export.lmdb`; per frame i of the face frames:
keypoint = the 68 landmarks in pixels of the stored size x size JPEG (invalid frames
interpolated), coeff_3dmm = the coarse 257 coefficients + crop [s, t0, t1] (the last three of
Deep3DFaceRecon's five alignment parameters), condition = [-euler, trans, focal] of the fine fit
(focal in pixels of the stored frames), id = the fine identity (1, n_id; OTAvatar expects the
AD-NeRF model's 100, i.e. bfm.variant=adnerf; the front model gives 80).
"""

from __future__ import annotations

import logging

import numpy as np

from prep.errors import BadConfigError, BadInputError, MissingInputError
from prep.export.lmdb import LmdbVideo, write_lmdb
from prep.io.files import load_npz, read_image
from prep.pipeline import StageContext, StageResult, register_stage
from prep.stages.fit_3dmm_coarse import interpolate_invalid

log = logging.getLogger(__name__)


def _load(path, stage: str) -> dict[str, np.ndarray]:
    if not path.exists():
        raise MissingInputError(stage, path)
    return load_npz(path)


def build_video(ctx: StageContext) -> LmdbVideo:
    """Assemble the arrays of this subject's video (frames streamed lazily)."""
    from prep.stages.landmarks import face_frame_path

    subject, size = ctx.subject, ctx.cfg.lmdb.size
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
    coeff = np.concatenate([coarse["coeff"][:, :257], coarse["trans_params"][:, 2:5]], 1)
    focal = float(np.asarray(fine["focal"]).reshape(-1)[0]) * size / w
    condition = np.concatenate([-fine["euler"], fine["trans"], np.full((T, 1), focal)], 1)
    if fine["id"].shape[-1] != 100:
        log.warning(
            "pack_lmdb: id has %d coefficients (OTAvatar expects 100: bfm.variant=adnerf)",
            fine["id"].shape[-1],
        )
    name = ctx.cfg.lmdb.video_name or subject.name
    frames = (read_image(face_frame_path(subject, i)) for i in range(T))
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
    config=("lmdb",),
    version=1,
    writes=lambda s: _written(s),
)
def run(ctx: StageContext) -> StageResult:
    cfg = ctx.cfg.lmdb
    if cfg.size not in (256, 512):
        log.warning("lmdb.size=%d: PIRenderer reads 256, OTAvatar 512", cfg.size)
    if cfg.split not in ("train", "test"):
        raise BadConfigError(f"lmdb.split={cfg.split!r}; use train or test")
    video = build_video(ctx)
    splits = {"train": [], "test": []}
    splits[cfg.split].append(video.name)
    target = write_lmdb(
        ctx.subject.lmdb_dir,
        [video],
        size=cfg.size,
        splits=splits,
        force=ctx.force,
        map_size=int(cfg.map_size_gb * 2**30),
        jpeg_quality=cfg.jpeg_quality,
    )
    n = len(video.coeff_3dmm)
    size_mb = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    log.info("pack_lmdb: %d frames of %s -> %s (%.1f MiB)", n, video.name, target, size_mb)
    return StageResult(n_frames=n, metrics={"lmdb_mib": size_mb})
