"""Gather what a subject's QA report shows from whatever stages have run.

Every source is optional: a subject that only ran perception gets detection and landmark plots,
one with tracking also gets landmark error and head pose. Nothing here draws; `prep.report.page`
turns a `SubjectSummary` into HTML.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from prep.config.export import ReportConfig
from prep.io.files import load_npz, nan_for_null, read_json
from prep.models.camera import CV_TO_GL
from prep.models.flame_tracking import load_tracking
from prep.subject import SubjectDir

log = logging.getLogger(__name__)


@dataclass
class Series:
    """A per-frame curve. values: (T,) or (T,K) with NaN where missing; labels name the columns."""

    title: str
    ylabel: str
    values: np.ndarray
    labels: list[str] = field(default_factory=list)
    invalid: np.ndarray | None = None  # (T,) bool: frames shaded as invalid
    threshold: float | None = None  # a horizontal line (the flag threshold)


@dataclass
class SubjectSummary:
    """Everything on one subject's report page."""

    name: str
    root: Path
    n_frames: int
    manifests: list[dict]  # in run order: stage, duration_s, n_frames, n_flagged, metrics, config
    series: list[Series]
    flagged: dict[int, list[str]]  # frame index -> reasons
    overlays: list[Path]  # mp4 and png files under overlays/
    headline: dict[str, float]  # the numbers shown in the index and logged as a table


def _manifests(subject: SubjectDir) -> list[dict]:
    out = []
    if subject.manifest_dir.is_dir():
        for p in sorted(subject.manifest_dir.glob("*.json")):
            try:
                man = read_json(p)
            except ValueError:
                log.warning("unreadable manifest %s", p)
                continue
            if man.get("stage") and man.get("stage") != "report":
                out.append(man | {"metrics": nan_for_null(man.get("metrics"))})
    return sorted(out, key=lambda m: m.get("started_at", ""))


def lmk_midpoint_dev_px(points_px: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per frame, the mean distance of each point from the midpoint of its neighbours in time.

    Args:
        points_px: (T,K,2) landmarks (NaN where missing).
        valid: (T,) bool.

    Returns:
        (T,) pixels; NaN at the ends and where a frame or its neighbours are invalid.
    """
    t = len(points_px)
    jit = np.full(t, np.nan)
    if t < 3:
        return jit
    mid = 0.5 * (points_px[:-2] + points_px[2:])
    d = np.linalg.norm(points_px[1:-1] - mid, axis=-1).mean(axis=-1)
    ok = valid[:-2] & valid[1:-1] & valid[2:]
    jit[1:-1] = np.where(ok, d, np.nan)
    return jit


def head_pose_deg(global_pose: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Head rotation relative to the camera as (yaw, pitch, roll) degrees: (T,3)."""
    r = CV_TO_GL @ w2c[:, :3, :3] @ Rotation.from_rotvec(global_pose).as_matrix()
    return np.degrees(Rotation.from_matrix(r).as_euler("YXZ"))


def _flag(flagged: dict[int, list[str]], mask: np.ndarray, reason: str) -> None:
    for i in np.flatnonzero(mask):
        flagged.setdefault(int(i), []).append(reason)


def collect(subject: SubjectDir, cfg: ReportConfig) -> SubjectSummary:
    """Read every available stage output of `subject` into a SubjectSummary."""
    series: list[Series] = []
    flagged: dict[int, list[str]] = {}
    headline: dict[str, float] = {}
    n = subject.n_frames if subject.video_json.exists() else 0
    if subject.detections.exists():
        det = load_npz(subject.detections)
        valid = det["valid"].astype(bool)
        n = n or len(valid)
        score = np.where(det["reason"].astype(str) == "ok", det["score"], np.nan)
        series.append(Series("Face detection confidence", "score", score, invalid=~valid))
        _flag(flagged, ~valid, "no face detected")
        headline["detected_frac"] = float(valid.mean()) if len(valid) else 0.0
    if subject.landmarks_npz.exists():
        lm = load_npz(subject.landmarks_npz)
        valid = lm["valid"].astype(bool)
        n = n or len(valid)
        dev = lmk_midpoint_dev_px(lm["points_px"].astype(np.float64), valid)
        series.append(
            Series(
                "Landmark jitter: distance to the temporal midpoint (lmk_midpoint_dev_px)",
                "px",
                dev,
                invalid=~valid,
                threshold=cfg.lmk_midpoint_dev_flag_px,
            )
        )
        flag = np.nan_to_num(dev) > cfg.lmk_midpoint_dev_flag_px
        _flag(flagged, flag, "landmark jitter (lmk_midpoint_dev_px)")
        _flag(flagged, ~valid, "no landmarks")
        headline["lmk_midpoint_dev_px_median"] = _nanmedian(dev)
    _collect_iris(subject, series, flagged, headline)
    _collect_flame(subject, cfg, series, flagged, headline)
    _collect_bfm(subject, series)
    overlays = sorted(
        p for p in subject.root.glob("overlays/*/*") if p.suffix.lower() in (".mp4", ".png")
    )
    manifests = _manifests(subject)
    n = n or max([int(m.get("n_frames") or 0) for m in manifests] + [0])
    headline.update(
        n_frames=float(n),
        n_flagged=float(len(flagged)),
        total_s=float(sum(m.get("duration_s") or 0 for m in manifests)),
    )
    return SubjectSummary(
        subject.name, subject.root, n, manifests, series, flagged, overlays, headline
    )


def _collect_flame(subject, cfg, series, flagged, headline) -> None:
    if not subject.flame_tracking.exists():
        return
    z = load_tracking(subject, "the report")
    valid = z.valid.astype(bool)
    rmse = np.where(valid, z.lmk_rmse_px, np.nan)
    series.append(
        Series("FLAME landmark error (RMSE)", "px", rmse, invalid=~valid, threshold=cfg.lmk_flag_px)
    )
    _flag(flagged, np.nan_to_num(rmse) > cfg.lmk_flag_px, "landmark error")
    _flag(flagged, ~valid, "tracking invalid")
    pose = head_pose_deg(z.global_pose.astype(np.float64), z.w2c.astype(np.float64))
    series.append(
        Series(
            "Head pose (relative to the camera)",
            "degrees",
            pose,
            ["yaw", "pitch", "roll"],
            invalid=~valid,
        )
    )
    series.append(
        Series(
            "FLAME translation", "m", z.transl.astype(np.float64), ["x", "y", "z"], invalid=~valid
        )
    )
    headline["lmk_rmse_px_median"] = _nanmedian(rmse)
    headline["tracked_frac"] = float(valid.mean()) if len(valid) else 0.0


def _collect_iris(subject, series, flagged, headline) -> None:
    if not subject.iris_npz.exists():
        return
    z = load_npz(subject.iris_npz)
    valid = z["valid"].astype(bool)  # (T, 2): subject's left, right eye
    if "ear" in z:
        ear = np.where(valid, z["ear"], np.nan)
        series.append(
            Series(
                "Eye aspect ratio (iris stage)",
                "EAR",
                ear,
                ["left eye", "right eye"],
                invalid=~valid.any(axis=1),
            )
        )
    reasons = z["reason"].astype(str) if "reason" in z else None
    for i in np.flatnonzero(~valid.all(axis=1)):
        why = sorted({r for r in reasons[i] if r and r != "ok"}) if reasons is not None else []
        flagged.setdefault(int(i), []).append("iris: " + (", ".join(why) or "invalid"))
    headline["iris_valid_frac"] = float(valid.all(axis=1).mean()) if len(valid) else 0.0


def _collect_bfm(subject, series) -> None:
    for name, path in (("coarse", subject.bfm_coarse), ("fine", subject.bfm_fine)):
        if path.exists():
            z = load_npz(path)
            if "euler" in z:
                series.append(
                    Series(
                        f"BFM {name} head rotation (AD-NeRF Euler)",
                        "degrees",
                        np.degrees(z["euler"]),
                        ["x", "y", "z"],
                    )
                )
            if "lmk_rmse_px" in z:
                inv = ~z["valid"].astype(bool) if "valid" in z else None
                series.append(
                    Series(
                        f"BFM {name} landmark error (RMSE)",
                        "px",
                        z["lmk_rmse_px"].astype(np.float64),
                        invalid=inv,
                    )
                )


def _nanmedian(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if len(a) else float("nan")
