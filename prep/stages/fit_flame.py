"""Stage fit_flame: fit FLAME to a subject's landmarks and irises (all frames at once).

Reads landmarks/landmarks.npz, iris/iris.npz and crop/crop.npz; writes
- flame/tracking.npz: the canonical FLAME tracking (keys listed in `TRACKING_KEYS` of
  prep.export.common; camera convention in prep.track.flame_params),
- flame/flame_params.json: IMAvatar/HRAvatar layout (prep.export.imavatar_json); it holds one
  camera, so it is left out (with a warning) when the crop moves (crop.mode=smooth),
- flame/metrics.json: per-frame landmark RMSE, iris error and jitter (pixels) plus summaries,
- overlays/fit_flame/fit.mp4 (+ a contact sheet): observed (green) and fitted (red) landmarks
  over a wireframe of the fitted mesh.
The headline metric is the mean landmark RMSE in crop pixels (``lmk_rmse_px``).

A photo collection (`prep.datasets.sequence`) is fitted by `prep.track.flame_collection`: no
temporal smoothness or bridging, one identity per image unless ``dataset.same_person=true``.

Intrinsics: top-level ``fx fy cx cy`` (original-video pixels; dataset defaults when null) are
mapped to each crop by its transform; without fx a shared focal length is estimated.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from prep.assets import asset_path
from prep.config import Config
from prep.datasets.sequence import is_sequence
from prep.errors import BadConfigError, BadInputError, MissingAssetError, MissingInputError
from prep.export.imavatar_json import flame_params_dict, write_flame_params_json
from prep.io.files import read_image, read_json, write_json
from prep.models.camera import intrinsics_for, project_np
from prep.models.flame_tracking import evaluate, landmarks_px, read_shape, save_tracking
from prep.pipeline import StageContext, StageResult, file_fingerprint, register_stage
from prep.subject import SubjectDir
from prep.track.flame_collection import fit_collection
from prep.track.flame_data import camera_intrinsics_orig, load_tracking_data
from prep.track.flame_fit import (
    DENSE_ASSET,
    Camera,
    build_flame,
    fit_dtype,
    fit_sequence,
    flame_assets,
    init_from_deca_code,
    tracking_arrays,
)

log = logging.getLogger(__name__)


def _writes(s: SubjectDir) -> list[Path]:
    return [s.flame_tracking, s.flame_params_json, s.flame_metrics]


def _shape_from_path(cfg: Config) -> Path | None:
    other = cfg.fit_flame.shape_from
    if not other:
        return None
    return Path(cfg.work_dir) / cfg.dataset.name / other / "flame" / "tracking.npz"


def _fingerprint(cfg: Config) -> dict:
    fp = {}
    p = _shape_from_path(cfg)
    if p is not None and p.exists():
        fp["shape_from"] = file_fingerprint(p)
    if (
        cfg.fit_flame.init == "deca_code"
        and cfg.fit_flame.deca_code
        and Path(cfg.fit_flame.deca_code).exists()
    ):
        fp["deca_code"] = file_fingerprint(cfg.fit_flame.deca_code)
    dense = asset_path(cfg, DENSE_ASSET)
    if cfg.fit_flame.w.dense > 0 and dense.is_file():  # optional: its arrival changes the fit
        fp["dense_embedding"] = file_fingerprint(dense)
    return fp


def _assets(cfg: Config) -> list[str]:
    names = flame_assets(cfg.flame, cfg.fit_flame)
    if cfg.fit_flame.init == "deca":
        names.append("deca")
    return names


def _dense_asset(ctx: StageContext, paths: dict) -> bool:
    """Add FLAME's MediaPipe embedding to `paths` when it is there; without it the fit runs on
    the 68 + 2 points with a warning (the default fit_flame.w.dense > 0 is an improvement, not a
    requirement)."""
    try:
        paths[DENSE_ASSET] = ctx.asset(DENSE_ASSET)
    except MissingAssetError as e:
        log.warning("fit_flame: %s; the fit leaves fit_flame.w.dense out", e)
        return False
    return True


@register_stage(
    "fit_flame",
    needs=("landmarks", "iris"),
    config=("flame", "fit_flame", "intrinsics", "trainer", "sequence", "same_person"),
    version=1,
    writes=_writes,
    assets=_assets,
    fingerprint=_fingerprint,
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg, ctx.subject
    tc = cfg.fit_flame
    if tc.threads:
        torch.set_num_threads(int(tc.threads))
    paths = {name: ctx.asset(name) for name in flame_assets(cfg.flame, tc)}
    dense = tc.w.dense > 0 and _dense_asset(ctx, paths)
    flame = build_flame(paths, cfg.flame, dense=dense, dtype=fit_dtype(cfg.trainer))
    mp_index = flame.mediapipe.mp_index if flame.mediapipe is not None else None
    data = load_tracking_data(subject, tc.min_score, mp_index)
    camera = _camera(cfg, data.orig_hw)
    init, fixed_shape = _init(ctx, flame, data)
    lightning_logger = ctx.logger.lightning() if ctx.logger else None  # per-step loss curves
    sequence = is_sequence(cfg, subject)
    if sequence:
        out = fit_sequence(
            flame,
            data,
            camera,
            tc,
            init,
            fixed_shape,
            ctx.device,
            trainer=cfg.trainer,
            logger=lightning_logger,
        )
    else:  # photo collection: no smoothness, no bridging, a shape per image unless same person
        same = cfg.dataset.same_person
        out = fit_collection(
            flame,
            data,
            camera,
            tc,
            same,
            init,
            fixed_shape,
            ctx.device,
            trainer=cfg.trainer,
            logger=lightning_logger,
        )
        log.info("fit_flame: photo collection, %s", "one identity" if same else "one per image")
    track = tracking_arrays(out, data, cfg.flame.version)
    if tc.photometric and not sequence:
        log.warning("fit_flame: fit_flame.photometric is not applied to a photo collection")
    # --- photometric phase (renderer engineer; prep.track.photometric) -----------------------
    photo_metrics = _photometric(ctx, flame, track, data) if tc.photometric and sequence else {}
    # ------------------------------------------------------------------------------------------
    save_tracking(subject, track)
    kp = landmarks_px(flame, track)
    _write_imavatar_json(subject, flame, track, kp, data, sequence)
    summary = out.summary()
    if photo_metrics:  # renderer engineer: the headline follows the refined fit
        summary["lmk_rmse_px"] = float(np.nanmean(track["lmk_rmse_px"]))
        summary.update({f"photo_{k}": v for k, v in photo_metrics.items()})
    _write_metrics(subject, data, out, summary)
    if tc.overlay_video:
        _overlays(ctx, flame, track, data, kp)
        if np.ndim(track["shape"]) == 1:  # the clay renderer takes one identity
            _shaded_overlays(ctx, flame)  # renderer engineer: clay mesh over the frames
    if ctx.logger:
        ctx.logger.summary(summary)
    n_bad = int((~data.valid).sum())
    log.info(
        "fit_flame: %d frames (%d invalid), landmark RMSE %.2f px, %.1fs",
        data.n_frames,
        n_bad,
        summary["lmk_rmse_px"],
        summary["fit_seconds"],
    )
    return StageResult(
        n_frames=data.n_frames, n_flagged=n_bad, metrics=summary, headline="lmk_rmse_px"
    )


def _camera(cfg: Config, orig_hw: np.ndarray) -> Camera:
    d = cfg.dataset
    fx = cfg.fx if cfg.fx is not None else d.fx
    fy = cfg.fy if cfg.fy is not None else d.fy
    cx = cfg.cx if cfg.cx is not None else d.cx
    cy = cfg.cy if cfg.cy is not None else d.cy
    fx, fy, cx, cy = camera_intrinsics_orig(orig_hw, fx, fy, cx, cy)
    return Camera(fx, fy, cx, cy)


def _init(ctx: StageContext, flame, data):
    """Initial values (init=rigid|deca_code|deca) and the fixed shape of `shape_from`."""
    tc, init, fixed = ctx.cfg.fit_flame, None, None
    if tc.init == "deca_code":
        if not tc.deca_code or not Path(tc.deca_code).exists():
            raise BadConfigError(
                "fit_flame.init=deca_code needs fit_flame.deca_code=<code.json>, "
                f"got {tc.deca_code}"
            )
        init = init_from_deca_code(
            read_json(tc.deca_code), data.frame_names, flame.n_shape, flame.n_expr
        )
    elif tc.init == "deca":
        from prep.track.deca import deca_init

        init = deca_init(
            ctx.asset("deca"), ctx.subject, data, flame.n_shape, flame.n_expr, ctx.device
        )
    path = _shape_from_path(ctx.cfg)
    if path is not None:
        if not path.exists():
            raise MissingInputError(
                "fit_flame",
                path,
                f"fit_flame.shape_from={tc.shape_from}: no FLAME fit of that subject",
            )
        shape = read_shape(path)
        if len(shape) < flame.n_shape:
            raise BadInputError(
                f"{path} has {len(shape)} shape coefficients; flame.n_shape={flame.n_shape}"
            )
        fixed = shape[: flame.n_shape]
    return init, fixed


def _write_metrics(subject: SubjectDir, data, out, summary: dict) -> None:
    def col(a):
        return [None if not np.isfinite(x) else round(float(x), 4) for x in a]

    write_json(
        subject.flame_metrics,
        {
            "summary": summary,
            "phases": [
                {"name": p.name, "iters": p.iters, "seconds": p.seconds, "loss": p.terms}
                for p in out.phases
            ],
            "frames": {
                "frame_names": [str(n) for n in data.frame_names],
                "valid": [bool(v) for v in data.valid],
                "lmk_rmse_px": col(out.lmk_rmse_px),
                "iris_err_px": col(out.iris_err_px),
                "lmk_accel_px": col(out.lmk_accel_px),
            },
        },
    )


def _overlays(ctx: StageContext, flame, track: dict, data, kp: np.ndarray) -> None:
    """Wireframe + landmarks video on sampled frames, logged to the experiment logger."""
    from prep.report.overlay import GREEN, RED, draw_points, sample_indices, write_overlays

    subject, tc = ctx.subject, ctx.cfg.fit_flame
    idx = sample_indices(data.n_frames, min(tc.overlay_max_frames, data.n_frames))
    faces = flame.faces.numpy()

    def render(k: int) -> np.ndarray:
        i = int(idx[k])
        path = subject.face_frame_path(int(Path(str(data.frame_names[i])).stem))
        img = read_image(path) if path.exists() else np.zeros((*data.image_size, 3), np.uint8)
        verts = _mesh_px(flame, track, i)
        tris = np.round(verts[faces] * 16).astype(np.int32)
        wire = cv2.polylines(img.copy(), list(tris), True, (200, 200, 255), 1, cv2.LINE_AA, 4)
        img = cv2.addWeighted(img, 0.6, wire, 0.4, 0)
        if data.valid[i]:
            img = draw_points(img, data.lmk_px[i], GREEN, 1.5)
        return draw_points(img, kp[i], RED, 1.5)

    fps = subject.video_fps() * len(idx) / max(data.n_frames, 1)
    written = write_overlays(
        subject.overlay_dir("fit_flame"), "fit", len(idx), render, max(fps, 1.0)
    )
    if ctx.logger:
        for p in written:
            if p.suffix == ".mp4":
                ctx.logger.log_video("fit_flame/overlay", p)
            elif p.suffix == ".png":
                ctx.logger.log_image("fit_flame/sheet", read_image(p))


def _mesh_px(flame, track: dict, i: int) -> np.ndarray:
    """Full-mesh vertices of frame i projected to crop pixels, (V, 2)."""
    with torch.no_grad():
        x = evaluate(flame, track, slice(i, i + 1)).vertices[0].double().numpy()
    return project_np(x, np.asarray(track["w2c"][i], np.float64), intrinsics_for(track["K"], i))


def _write_imavatar_json(
    subject: SubjectDir, flame, track: dict, kp: np.ndarray, data, sequence: bool
) -> None:
    """flame_params.json, which holds one camera and one identity: written only when the crop does
    not move and the frames are one person's."""
    if np.ndim(track["K"]) == 3 or np.ndim(track["shape"]) == 2:
        subject.flame_params_json.unlink(missing_ok=True)
        if sequence:
            why = "the crop moves (crop.mode=smooth)"
        elif np.ndim(track["shape"]) == 2:
            why = "the images are a photo collection with a crop and an identity per image"
        else:  # dataset.same_person=true: one identity, still a crop per image
            why = "the images are a photo collection with a crop per image"
        log.warning(
            "fit_flame: flame_params.json not written: %s, so each frame has its own intrinsics "
            "(kept in tracking.npz); IMAvatar/HRAvatar need one camera%s",
            why,
            ": re-run with crop.mode=static" if sequence else "",
        )
        return
    obj = flame_params_dict(track, kp, data.lmk_px, data.lmk_w, with_eyelids=flame.has_eyelids)
    write_flame_params_json(subject.flame_params_json, obj)


def _photometric(ctx: StageContext, flame, track: dict, data) -> dict[str, float]:
    """fit_flame.photometric=true: refine `track` in place against the frames (renderer engineer).

    Uses the face-parsing labels (fit_flame.photo.region) when the parsing stage has run, else the
    whole rendered face; see prep.track.photometric for the model and schedule.
    """
    from prep.geometry.crop import inframe_reader
    from prep.track.photometric_tracking import frame_loader, refine_tracking

    s, pc = ctx.subject, ctx.cfg.fit_flame.photo

    def stem(i: int) -> int:
        return int(Path(str(data.frame_names[i])).stem)

    if not s.parsing_dir.is_dir():
        log.warning("photometric phase without parsing labels: the whole face render is compared")
    inframe = inframe_reader(s)
    load = frame_loader(
        lambda i: s.face_frame_path(stem(i)),
        lambda i: s.parsing_path(stem(i)),
        lambda i: s.mask_path(stem(i)),
        list(pc.region),
        lambda i: inframe(stem(i)),
    )
    refined, metrics = refine_tracking(flame, track, data.lmk_px, data.lmk_w, load, pc)
    track.update(refined)
    return metrics


def _shaded_overlays(ctx: StageContext, flame) -> None:
    """overlays/shaded: frame | clay-shaded fitted mesh | blend (renderer engineer)."""
    from prep.report.shaded import write_shaded_overlays

    s = ctx.subject
    write_shaded_overlays(
        s,
        flame,
        s.face_frame_path,
        s.video_fps(),
        ctx.logger,
        max_frames=ctx.cfg.fit_flame.overlay_max_frames,
    )
