"""Stage albedo: per-frame albedo images (albedo/%06d.png) of the final RGBA crops.

Backends (`albedo=shading|intrinsic_anything`, the classes below, built from their settings as
``cls(settings, ctx)``):
- shading (default, no weights): divides out a grey shading estimate inside the face-parsing
  region. When a FLAME fit exists (flame/tracking.npz; re-run with force=true after fit_flame) the
  shading is the SH irradiance of the fitted mesh's normals fitted to each frame, otherwise a
  masked multi-scale Retinex estimate (see `prep.vision.albedo.decompose`).
- intrinsic_anything: a user's IntrinsicAnything install run as a subprocess with HRAvatar's
  arguments on image/, skipped frames filled by temporal blending.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import torch

from prep.config.backends import instantiate
from prep.config.render import IntrinsicAnythingConfig, ShadingAlbedoConfig
from prep.errors import MissingInputError
from prep.io.files import image_hw, read_image, write_image
from prep.models.camera import rescale_intrinsics
from prep.models.flame import FlameModel
from prep.models.flame_io import load_flame_model
from prep.models.flame_tracking import evaluate, load_tracking
from prep.pipeline import StageContext, StageResult, register_stage
from prep.progress import progress
from prep.render import interpolate, rasterize, vertex_normals, world_to_camera
from prep.subject import SubjectDir
from prep.vision.albedo import divide_shading, face_region, mesh_shading, retinex_shading
from prep.vision.albedo import intrinsic_anything as ia
from prep.vision.albedo.decompose import lowfreq_std, srgb_to_linear

log = logging.getLogger(__name__)


class MeshNormals:
    """Renders camera-space normals of the tracked FLAME mesh for given frames."""

    def __init__(self, ctx: StageContext):
        self.trk = load_tracking(ctx.subject, "albedo")
        data = load_flame_model(ctx.asset(self.trk.model))
        self.model = FlameModel(data, self.trk.n_shape, self.trk.n_expr)
        self.image_size = tuple(int(x) for x in self.trk.image_size)

    def render(self, idx: list[int], size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """((B,H,W,3) unit normals, (B,H,W) covered) for frames `idx` at image size `size_hw`."""
        t = self.trk
        sel = np.asarray(idx)
        with torch.no_grad():
            verts = evaluate(self.model, t.params(), sel).vertices
            K = torch.as_tensor(t.K_frames[sel], dtype=torch.float32)
            K = rescale_intrinsics(K, self.image_size, size_hw)
            cam = world_to_camera(verts, torch.as_tensor(t.w2c[sel], dtype=torch.float32))
            frags = rasterize(cam, self.model.faces, K, size_hw)
            n = interpolate(vertex_normals(cam, self.model.faces), self.model.faces, frags)
            n = torch.nn.functional.normalize(n, dim=-1)
        return n.numpy(), frags.mask.numpy()


def _inputs(subject: SubjectDir, i: int, region_labels: list[int]):
    rgba = read_image(subject.image_path(i), "rgba")
    labels = read_image(subject.parsing_path(i), "gray")
    region = face_region(labels, rgba[..., 3], region_labels)
    return rgba[..., :3], region


class ShadingAlbedo:
    """albedo=shading: grey shading divided out inside the face region (`ShadingAlbedoConfig`)."""

    def __init__(self, settings: ShadingAlbedoConfig, ctx: StageContext):
        self.settings, self.ctx = settings, ctx

    def run(self, todo: list[int]) -> tuple[dict[str, float], int]:
        """Write the albedo of frames `todo`; returns (metrics, frames without a face region)."""
        return _run_shading(self.ctx, self.settings, todo)


class IntrinsicAnythingAlbedo:
    """albedo=intrinsic_anything: IntrinsicAnything's albedo, skipped frames blended in time."""

    def __init__(self, settings: IntrinsicAnythingConfig, ctx: StageContext):
        self.settings, self.ctx = settings, ctx

    def run(self, todo: list[int]) -> tuple[dict[str, float], int]:
        return _run_intrinsic_anything(self.ctx, self.settings, todo)


def _run_shading(
    ctx: StageContext, cfg: ShadingAlbedoConfig, todo: list[int]
) -> tuple[dict[str, float], int]:
    subject = ctx.subject
    mesh = None
    if cfg.use_mesh and subject.flame_tracking.exists():
        mesh = MeshNormals(ctx)
    valid = mesh.trk.valid.astype(bool) if mesh is not None else np.zeros(0, bool)
    before, after, n_flagged, n_mesh = [], [], 0, 0
    step = max(1, cfg.batch_size)
    for k in progress(range(0, len(todo), step), total=-(-len(todo) // step), desc="albedo"):
        idx = todo[k : k + step]
        frames = [_inputs(subject, i, cfg.region) for i in idx]
        normals = covered = None
        use_mesh = [i < len(valid) and bool(valid[i]) for i in idx]  # no mesh: valid is empty
        if mesh is not None and any(use_mesh):
            sel = [i for i, u in zip(idx, use_mesh, strict=True) if u]
            normals, covered = mesh.render(sel, frames[0][0].shape[:2])
        j = 0
        for i, (rgb, region), u in zip(idx, frames, use_mesh, strict=True):
            lin = srgb_to_linear(rgb)
            if u:
                assert normals is not None and covered is not None  # rendered above
                shading = mesh_shading(
                    lin, region, normals[j], covered[j], cfg.sh_ridge, tuple(cfg.retinex_sigmas)
                )
                j += 1
                n_mesh += 1
            else:
                shading = retinex_shading(lin, region, list(cfg.retinex_sigmas))
            out = divide_shading(rgb, region, shading, cfg.outside, cfg.min_shading)
            write_image(subject.albedo_path(i), out.albedo)
            n_flagged += int(not region.any())
            if i % 10 == 0 and region.any():
                before.append(lowfreq_std(rgb, region))
                after.append(lowfreq_std(out.albedo, region))
    metrics = {"mesh_frames": float(n_mesh)}
    if before:
        metrics["lowfreq_std_in"] = float(np.mean(before))
        metrics["lowfreq_std_out"] = float(np.mean(after))
    return metrics, n_flagged


def _run_intrinsic_anything(
    ctx: StageContext, cfg: IntrinsicAnythingConfig, todo: list[int]
) -> tuple[dict[str, float], int]:
    subject = ctx.subject
    n = subject.n_frames
    raw = subject.root / "albedo_raw"
    expected = set(range(0, n, max(1, cfg.image_interval)))
    produced = ia.produced_frames(raw) if raw.is_dir() else {}
    if ctx.force or not expected <= produced.keys():
        if raw.is_dir():
            shutil.rmtree(raw)
        ia.run_install(cfg, subject.image_dir, raw)
        produced = ia.produced_frames(raw)
    plan = ia.fill_plan(n, list(produced))
    size = image_hw(read_image(subject.image_path(0), "rgb"))
    for i in progress(todo, desc="albedo fill"):
        a, b, w = plan[i]
        img_a = ia.load_albedo(produced[a], size)
        img = ia.blend(img_a, ia.load_albedo(produced[b], size), w) if b != a else img_a
        write_image(subject.albedo_path(i), img)
    return {"decomposed_frames": float(len(produced))}, 0


@register_stage(
    "albedo",
    needs=("parsing",),
    uses=("fit_flame",),  # divides out the fitted mesh's shading when a FLAME fit exists
    config=("albedo",),
    version=1,
    writes=lambda s: [s.albedo_dir],
    assets=lambda cfg: cfg.albedo.backend.assets(),
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg.albedo, ctx.subject
    n = subject.n_frames
    if not subject.image_dir.is_dir():
        raise MissingInputError("parsing", subject.image_dir, "albedo needs the RGBA crops")
    subject.ensure(subject.albedo_dir)
    ctx.fresh_outputs([subject.albedo_dir])
    todo = [i for i in range(n) if not subject.albedo_path(i).exists()]
    metrics, n_flagged = instantiate(cfg.backend, ctx).run(todo)
    if ctx.logger is not None and n:
        rgb = read_image(subject.image_path(0), "rgb")
        ctx.logger.log_image(
            "albedo/first", np.concatenate([rgb, read_image(subject.albedo_path(0), "rgb")], axis=1)
        )
        ctx.logger.log_metrics(metrics)
    return StageResult(n_frames=n, n_skipped=n - len(todo), n_flagged=n_flagged, metrics=metrics)
