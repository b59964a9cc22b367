"""Stage import_tracking: another tracker's folder -> our landmarks, irises, masks and tracking.

For the import datasets (``dataset=imavatar|vhap|metrical|insta_tracked``; `prep.importers`),
after extract_frames copied the frames (identity crop), this stage writes what the perception
stages and fit_flame would have written, so exports and fit_flame run without perception:

- landmarks/landmarks.npz + keypoint.json: the folder's detections (IMAvatar keypoint.json), or
  the imported fit's own 68 points projected through its camera (VHAP, metrical-tracker, INSTA);
- iris/iris.npz + iris.json: likewise (iris.json, or the FLAME iris centres);
- mask/: the folder's masks (IMAvatar mask/, VHAP fg_masks/) when the images carry none;
- parsing/labels/: IMAvatar's semantic/ (BiSeNet labels) when the folder has it;
- flame/tracking.npz: the FLAME parameters and camera in our canonical convention (not for INSTA,
  which has none: run fit_flame, whose camera the import notes give);
- import.json: source, FLAME version, notes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from prep.config import Config
from prep.errors import BadConfigError, BadInputError
from prep.importers import IMPORT_KINDS, Imported, read_importer
from prep.importers import landmarks as lmk
from prep.io.files import read_image, save_npz, write_image, write_json
from prep.models.camera import shared_or_per_frame
from prep.models.flame_tracking import save_tracking, tracking_arrays
from prep.pipeline import StageContext, StageResult, register_stage
from prep.subject import SubjectDir, frame_stem

log = logging.getLogger(__name__)


def import_folder(cfg: Config) -> Path:
    """``<dataset.root>/<subject>``, checked."""
    from prep.subject import subject_name

    if cfg.dataset.name not in IMPORT_KINDS:
        raise BadConfigError(f"stage import_tracking needs dataset={'|'.join(IMPORT_KINDS)}")
    if not cfg.dataset.root:
        raise BadConfigError(f"dataset={cfg.dataset.name} needs dataset.root=<folder of subjects>")
    folder = Path(cfg.dataset.root).expanduser() / subject_name(cfg)
    if not folder.is_dir():
        raise BadInputError(f"{cfg.dataset.name} folder not found: {folder}")
    return folder


def _fingerprint(cfg: Config) -> dict:
    if cfg.dataset.name not in IMPORT_KINDS:
        return {}
    from prep.datasets import resolve_source
    from prep.subject import subject_name

    return {"source": resolve_source(cfg, subject_name(cfg)).fingerprint()}


def _assets(cfg: Config) -> list[str]:
    """The FLAME model and 70-point embedding: they turn imported fits into landmarks."""
    if cfg.dataset.name in ("vhap", "metrical", "insta_tracked"):
        return [cfg.flame.version, "flame_lmk_embedding_eyes"]
    return []


def _writes(s: SubjectDir) -> list[Path]:
    return [
        s.landmarks_npz,
        s.keypoint_json,
        s.iris_npz,
        s.iris_json,
        s.flame_tracking,
        s.mask_dir,
        s.parsing_dir,
        s.root / "import.json",
    ]


@register_stage(
    "import_tracking",
    needs=("extract_frames",),
    config=("dataset", "flame"),
    version=1,
    writes=_writes,
    assets=_assets,
    fingerprint=_fingerprint,
)
def run(ctx: StageContext) -> StageResult:
    cfg, subject = ctx.cfg, ctx.subject
    imp = read_importer(cfg.dataset.name, import_folder(cfg))
    T = imp.n_frames
    if subject.n_frames != T:
        raise BadInputError(
            f"extract_frames wrote {subject.n_frames} frames, the import has {T}: "
            "re-run with extract_frames.max_frames=null"
        )
    model_name = imp.model or cfg.flame.version
    if imp.model and imp.model != cfg.flame.version:
        log.warning(
            "the imported fit belongs to %s (flame=%s is configured): %s is used",
            imp.model,
            cfg.flame.version,
            imp.model,
        )
    if imp.mask_files is not None:
        for i, p in enumerate(imp.mask_files):
            write_image(subject.mask_path(i), read_image(p, "gray"))
    if imp.label_files is not None:  # IMAvatar's semantic/: BiSeNet labels, as parsing writes
        for i, p in enumerate(imp.label_files):
            write_image(subject.parsing_path(i), read_image(p, "gray"))
    pts, iris = imp.lmk_px, imp.iris_px
    if (pts is None or iris is None) and (imp.params is not None or imp.meshes is not None):
        fit = _fit_landmarks(ctx, imp, model_name)
        pts = fit[:, :68] if pts is None else pts
        iris = fit[:, [69, 68]] if iris is None else iris  # embedding: right, left -> left, right
    names = [f"{frame_stem(i)}.png" for i in range(T)]
    _write_landmarks(subject, names, pts, iris, imp.image_size, cfg.dataset.name)
    if imp.params is not None:
        save_tracking(subject, _tracking(imp, imp.params, names, model_name))
    write_json(
        subject.root / "import.json",
        {
            "dataset": cfg.dataset.name,
            "source": str(import_folder(cfg)),
            "flame_model": model_name,
            "notes": imp.notes,
        },
    )
    for note in imp.notes:
        log.warning("%s", note)
    valid = np.isfinite(pts).all((1, 2)) if pts is not None else np.zeros(T, bool)
    return StageResult(
        n_frames=T,
        n_flagged=int((~valid).sum()),
        metrics={"frames": float(T), "landmark_frames": float(valid.sum())},
    )


def _camera(imp: Imported) -> tuple[np.ndarray, np.ndarray]:
    """(T,4,4) w2c and (T,3,3) float64 K of an import with FLAME parameters or meshes."""
    if imp.w2c is None or imp.K is None:
        raise BadInputError("the imported tracking has FLAME parameters or meshes but no camera")
    return imp.w2c, np.asarray(imp.K, np.float64)


def _fit_landmarks(ctx: StageContext, imp: Imported, model_name: str):
    """(T,70,2) landmarks + irises of the imported FLAME parameters or meshes."""
    import torch

    from prep.models.flame import FlameModel
    from prep.models.flame_io import load_flame_model, load_landmark_embedding

    data = load_flame_model(ctx.asset(model_name))
    emb = load_landmark_embedding(ctx.asset("flame_lmk_embedding_eyes"))
    w2c, K = _camera(imp)
    if imp.params is not None:
        p = imp.params
        model = FlameModel(
            data, len(p["shape"]), max(p["expr"].shape[1], 1), emb, dtype=torch.float64
        )
        return lmk.from_params(model, p, w2c, K)  # no expression: padded with a zero
    if imp.meshes is None:
        raise BadInputError("the imported tracking has neither FLAME parameters nor meshes")
    model = FlameModel(data, 1, 1, emb, dtype=torch.float64)
    out = []
    for a in range(0, imp.n_frames, 64):
        idx = np.arange(a, min(a + 64, imp.n_frames))
        verts = imp.meshes(idx)
        if verts.shape[1] != model.n_vertices:
            raise BadInputError(
                f"imported meshes have {verts.shape[1]} vertices; the FLAME "
                f"model {model_name} has {model.n_vertices}"
            )
        out.append(lmk.from_meshes(model, verts, w2c[idx], K[idx], imp.reference_mesh))
    return np.concatenate(out)


def _write_landmarks(subject, names, pts, iris, image_size, kind: str) -> None:
    from prep.io.files import write_json as wj

    T = len(names)
    if pts is None:
        raise BadInputError("the import has neither landmarks nor a fit to take them from")
    pts = np.asarray(pts, np.float64)
    valid = np.isfinite(pts).all((1, 2))
    save_npz(
        subject.landmarks_npz,
        frame_names=np.asarray(names),
        points_px=pts.astype(np.float32),
        points_raw_px=pts.astype(np.float32),
        scores=np.where(valid[:, None], 1.0, 0.0).repeat(68, 1).astype(np.float32),
        valid=valid,
        interpolated=np.zeros(T, bool),
        reason=np.where(valid, "", "no_face"),
        image_hw=np.asarray(image_size),
        backend=np.asarray(f"import:{kind}"),
    )
    wj(
        subject.keypoint_json,
        {n: np.round(pts[i], 3).tolist() for i, n in enumerate(names) if valid[i]},
        indent=None,
    )
    if iris is None:
        return
    iris = np.asarray(iris, np.float64)
    ok = np.isfinite(iris).all(-1)
    save_npz(
        subject.iris_npz, frame_names=np.asarray(names), iris_px=iris.astype(np.float32), valid=ok
    )
    wj(
        subject.iris_json,
        {n: np.round(iris[i].reshape(4), 3).tolist() for i, n in enumerate(names) if ok[i].all()},
        indent=None,
    )


def _tracking(
    imp: Imported, params: dict[str, np.ndarray], names: list[str], model_name: str
) -> dict:
    T = imp.n_frames
    w2c, K = _camera(imp)
    return tracking_arrays(
        names,
        np.ones(T, bool),
        np.full(T, np.nan),
        params,
        w2c,
        shared_or_per_frame(K),
        imp.image_size,
        np.tile(np.eye(3), (T, 1, 1)),
        model_name,
    )
