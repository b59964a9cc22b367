"""Stage export: write the configured trainer formats under <subject>/export/<format>/.

Formats: imavatar (IMAvatar/HRAvatar/SplattingAvatar), insta, gaussianavatars (FLAME path, from
flame/tracking.npz) and nerf (AD-NeRF, BFM path, from bfm/fine.npz). Per-frame files are
skipped when present unless force, so a killed export resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from prep.errors import BadConfigError
from prep.pipeline import StageContext, StageResult, register_stage
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

FORMATS = ("imavatar", "insta", "gaussianavatars", "nerf")


def _check_formats(formats: list[str]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadConfigError(f"export.formats={formats}: choose from {', '.join(FORMATS)}")


def _bfm_fingerprint(cfg) -> dict:
    """nerf reads bfm/fine.npz: its manifest is an input when nerf is exported."""
    if "nerf" not in cfg.export.formats:
        return {}
    import hashlib

    from prep.app import subject_dir

    path = subject_dir(cfg).manifest_path("fit_3dmm_fine")
    return {"fit_3dmm_fine": hashlib.sha1(path.read_bytes()).hexdigest()[:16]
            if path.exists() else None}  # fmt: skip


def _writes(subject: SubjectDir) -> list[Path]:
    """Every format folder and its per-frame folders (a deleted file or folder re-runs export)."""
    root = subject.root / "export"
    if not root.is_dir():
        return []
    fmts = sorted(p for p in root.iterdir() if p.is_dir())
    return fmts + sorted(q for p in fmts for q in p.iterdir() if q.is_dir())


@register_stage(
    "export",
    needs=("fit_flame",),
    config=("export",),
    version=1,
    writes=_writes,
    fingerprint=_bfm_fingerprint,
)
def run(ctx: StageContext) -> StageResult:
    from prep.export.gaussianavatars import export_gaussianavatars
    from prep.export.imavatar import export_imavatar
    from prep.export.insta import export_insta
    from prep.export.nerf import export_nerf

    cfg = ctx.cfg.export
    _check_formats(list(cfg.formats))
    counts: dict[str, float] = {}
    for fmt in cfg.formats:
        out = ctx.subject.export_dir(fmt)
        if fmt == "imavatar":
            n = export_imavatar(ctx.subject, cfg, out, ctx.force, _root_joint_fn(ctx))
        elif fmt == "insta":
            n = export_insta(ctx.subject, cfg, out, ctx.force, _vertices_fn(ctx))
        elif fmt == "gaussianavatars":
            n = export_gaussianavatars(ctx.subject, cfg, out, ctx.force)
        else:
            n = export_nerf(ctx.subject, cfg, out, ctx.force)
        counts[f"{fmt}_frames"] = float(n)
        log.info("export %-16s %d frames -> %s", fmt, n, out)
    return StageResult(n_frames=int(max(counts.values())), metrics=counts)


def _flame_model(ctx: StageContext, track):
    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model

    return FlameModel(load_flame_model(ctx.asset(track.model)), track.n_shape, track.n_expr)


def _root_joint_fn(ctx: StageContext):
    """(T,3) FLAME root joint per frame (it depends on shape and expression); loads the FLAME
    model only when called, in float64 (the joint is the rotation centre of the folded pose)."""

    def fn(track) -> np.ndarray:
        import torch

        from prep.models.flame import FlameModel
        from prep.models.flame_io import load_flame_model

        data = load_flame_model(ctx.asset(track.model))
        model = FlameModel(data, track.n_shape, track.n_expr, dtype=torch.float64)
        t = len(track.expr)

        def f64(a):
            return torch.as_tensor(np.asarray(a, np.float64))

        with torch.no_grad():
            z3 = torch.zeros(t, 3, dtype=torch.float64)
            out = model(f64(track.shape), f64(track.expr), z3, z3, z3,
                        torch.zeros(t, 6, dtype=torch.float64),
                        eyelids=f64(track.eyelids) if model.has_eyelids else None,
                        vertex_idx=torch.zeros(1, dtype=torch.long))  # fmt: skip
        return out.joints[:, 0].numpy()

    return fn


def _vertices_fn(ctx: StageContext):
    """FLAME world-space vertices for INSTA meshes, or None when meshes are off or unavailable."""
    if not ctx.cfg.export.insta_meshes:
        return None
    import torch

    from prep.export.common import load_tracking

    track = load_tracking(ctx.subject)
    model = _flame_model(ctx, track)
    faces = model.faces.numpy()

    def fn(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def t(a):
            return torch.as_tensor(np.asarray(a, np.float32))

        with torch.no_grad():
            out = model(
                t(track.shape), t(track.expr[idx]), t(track.global_pose[idx]),
                t(track.neck_pose[idx]), t(track.jaw_pose[idx]), t(track.eyes_pose[idx]),
                transl=t(track.transl[idx]),
                eyelids=t(track.eyelids[idx]) if model.has_eyelids else None,
            )  # fmt: skip
        return out.vertices.numpy(), faces

    return fn
