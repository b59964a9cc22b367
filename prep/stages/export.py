"""Stage export: write the configured trainer formats under <subject>/export/<format>/.

Formats: imavatar (IMAvatar), hravatar (HRAvatar), insta, gaussianavatars (FLAME path, from
flame/tracking.npz) and nerf (AD-NeRF, BFM path, from bfm/fine.npz). Each folder holds what its
trainer's own loader opens (see the exporter modules and the README's export table) plus
prep_export.json (model version, notes). Per-frame files are skipped when present unless force,
so a killed export resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from prep.config import Config
from prep.config.export import ExportFormat
from prep.errors import BadConfigError, MissingAssetError
from prep.pipeline import StageContext, StageResult, register_stage
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


def _check_formats(formats: list[str]) -> None:
    if not formats:
        raise BadConfigError(f"export.formats is empty: choose from {', '.join(ExportFormat)}")


def _bfm_fingerprint(cfg) -> dict:
    """nerf reads bfm/fine.npz: its manifest is an input when nerf is exported."""
    if "nerf" not in cfg.export.formats:
        return {}
    import hashlib

    from prep.subject import subject_dir

    path = subject_dir(cfg).manifest_path("fit_3dmm_fine")
    return {
        "fit_3dmm_fine": hashlib.sha1(path.read_bytes()).hexdigest()[:16] if path.exists() else None
    }


def _assets(cfg: Config) -> list[str]:
    """INSTA's topology when INSTA meshes are written; the DeepSpeech features folder for nerf
    unless export.nerf_audio names the file (the FLAME model is the tracking's: checked in run)."""
    names = []
    if "insta" in cfg.export.formats and cfg.export.insta_meshes:
        names.append("insta_topology")
    if "nerf" in cfg.export.formats and not cfg.export.nerf_audio:
        names.append("deepspeech_features")
    return names


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
    version=2,
    writes=_writes,
    assets=_assets,
    fingerprint=_bfm_fingerprint,
    uses=("import_tracking",),  # a re-import re-exports
)
def run(ctx: StageContext) -> StageResult:
    from prep.export.gaussianavatars import export_gaussianavatars
    from prep.export.imavatar import export_imavatar
    from prep.export.insta import export_insta
    from prep.export.nerf import export_nerf

    cfg = ctx.cfg.export
    _check_formats(list(cfg.formats))
    audio = _audio_path(ctx) if "nerf" in cfg.formats else None  # before any work
    counts: dict[str, float] = {}
    for fmt in cfg.formats:
        out = ctx.subject.export_dir(fmt)
        if fmt in ("imavatar", "hravatar"):
            n = export_imavatar(ctx.subject, cfg, out, ctx.force, _root_joint_fn(ctx), fmt)
        elif fmt == "insta":
            flame, topology = _insta_meshes(ctx) if cfg.insta_meshes else (None, None)
            n = export_insta(ctx.subject, cfg, out, ctx.force, flame, topology)
        elif fmt == "gaussianavatars":
            n = export_gaussianavatars(ctx.subject, cfg, out, ctx.force)
        else:
            n = export_nerf(ctx.subject, cfg, out, ctx.force, audio)
        counts[f"{fmt}_frames"] = float(n)
        log.info("export %-16s %d frames -> %s", fmt, n, out)
    return StageResult(n_frames=int(max(counts.values())), metrics=counts)


def _audio_path(ctx: StageContext) -> Path:
    """This clip's DeepSpeech features: export.nerf_audio, else <deepspeech_features>/<subject>.npy.

    Raises:
        MissingAssetError: one line naming the file, how to make it and the keys to set.
    """
    how = f"AD-NeRF data_util/deepspeech_features/extract_ds_features.py on {ctx.subject.audio_wav}"
    if ctx.cfg.export.nerf_audio:
        path = Path(ctx.cfg.export.nerf_audio).expanduser()
        key = "export.nerf_audio"
    else:
        path = ctx.asset("deepspeech_features") / f"{ctx.subject.name}.npy"
        key = "assets.deepspeech_features"
    if not path.is_file():
        raise MissingAssetError("deepspeech_features", path, how, key)
    return path


def _flame_model(ctx: StageContext, track):
    import torch

    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model

    data = load_flame_model(ctx.asset(track.model))
    return FlameModel(data, track.n_shape, track.n_expr, dtype=torch.float64)


def _root_joint_fn(ctx: StageContext):
    """(T,3) FLAME root joint per frame (it depends on shape and expression); loads the FLAME
    model only when called, in float64 (the joint is the rotation centre of the folded pose)."""

    def fn(track) -> np.ndarray:
        import torch

        from prep.models.flame_tracking import evaluate, rest_params

        model = _flame_model(ctx, track)
        p: dict[str, np.ndarray | None] = {
            **rest_params(track.shape, 0, len(track.expr)),
            "expr": track.expr,
            "eyelids": track.eyelids,
            "transl": None,  # the rest joints
        }
        with torch.no_grad():
            out = evaluate(model, p, vertex_idx=torch.zeros(1, dtype=torch.long))
        return out.joints[:, 0].numpy()

    return fn


def _insta_meshes(ctx: StageContext):
    """FLAME vertices of the tracking and INSTA's simplified topology (both assets checked)."""
    from prep.export.flame_mesh import FlameVertices, insta_topology
    from prep.models.flame_tracking import load_tracking

    track = load_tracking(ctx.subject)
    flame = FlameVertices(_flame_model(ctx, track), track)
    topology = insta_topology(ctx.asset("insta_topology"), len(flame.model.v_template))
    return flame, topology
