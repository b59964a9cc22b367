"""face-alignment (FAN, 2DFAN4) as a landmark backend, with the files face-alignment loads.

face-alignment finds its weights by URL: the 2D FAN under ``<torch hub dir>/checkpoints/<file
name of its URL>`` and S3FD through ``path_to_detector`` or the same hub folder, downloading when
a file is absent. This project never downloads: the exact file names come from the installed
face-alignment's own URL tables (1.5: ``2DFAN4-11f355bf06.pth.tar`` and ``s3fd-619a316812.pth``;
1.4 used TorchScript ``.zip`` files), a missing one is one MissingAssetError naming it, and any
download attempt while the networks load is refused the same way. ``assets.fan_dir`` may be any
folder holding the files: unless it already is a ``hub/checkpoints`` folder, a temporary
``hub/checkpoints`` of links to them is prepared and torch hub pointed there while loading.

FAN's crop assumes boxes from its own detector, S3FD (centre moved up by 0.12 of the box height,
scale (w + h) / 195), so the backend runs S3FD on every frame as face-alignment does and, where
the detect stage tracked a face, keeps the S3FD box that overlaps it most. Point scores are
FAN's heatmap peaks, clipped to [0, 1].
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from prep.assets import ASSETS, FAN_FILES
from prep.errors import MissingAssetError, MissingDependencyError
from prep.vision.landmarks import LandmarkResult

log = logging.getLogger(__name__)

FAN_URL = ASSETS["fan_dir"].url
# face-alignment without its opencv-python requirement (we ship opencv-contrib-python's cv2)
INSTALL_HINT = "make fan  (pip install -e '.[fan]' && pip install --no-deps face-alignment==1.5.0)"


def expected_files() -> dict[str, str]:
    """File names the installed face-alignment loads: ``{"fan": ..., "s3fd": ...}``.

    Taken from its URL tables: ``face_alignment.api.models_urls['2DFAN-4']`` (1.5), or in 1.4
    ``models_urls.get(<torch major.minor>, default_model_urls)``; S3FD from
    ``face_alignment.detection.sfd.sfd_detector.models_urls['s3fd']``.
    """
    import torch
    from face_alignment import api
    from face_alignment.detection.sfd import sfd_detector

    urls = api.models_urls
    if hasattr(api, "default_model_urls"):  # 1.4: TorchScript archives chosen by torch version
        ver = torch.__version__.split("+")[0].rsplit(".", 1)[0]
        urls = api.models_urls.get(ver, api.default_model_urls)
    return {
        "fan": Path(urlparse(urls["2DFAN-4"]).path).name,
        "s3fd": Path(urlparse(sfd_detector.models_urls["s3fd"]).path).name,
    }


def installed_files() -> tuple[dict[str, str], str]:
    """(`expected_files`, face-alignment's version); without face-alignment installed, the files
    1.5 loads (what ``make fan`` installs) and "1.5"."""
    try:
        import face_alignment
    except ImportError:
        return dict(FAN_FILES), "1.5"
    return expected_files(), getattr(face_alignment, "__version__", "?")


def _missing(path: Path, reason: str) -> MissingAssetError:
    return MissingAssetError(
        "fan_dir", path, FAN_URL, "assets.fan_dir", reason=reason, status="missing"
    )


def check_files(fan_dir: Path, names: dict[str, str], version: str) -> dict[str, Path]:
    """The checkpoint paths in `fan_dir`; MissingAssetError naming the first absent file."""
    paths = {k: Path(fan_dir) / n for k, n in names.items()}
    for p in paths.values():
        if not p.is_file():
            raise _missing(p, f"face-alignment {version} loads exactly {p.name}, not found")
    return paths


@contextlib.contextmanager
def hub_layout(fan_dir: Path, paths: dict[str, Path]) -> Iterator[Path]:
    """A torch hub folder whose ``checkpoints/`` holds the files (`fan_dir`'s own parent when it
    is already ``hub/checkpoints``, else a temporary folder of links)."""
    fan_dir = Path(fan_dir)
    if fan_dir.name == "checkpoints" and fan_dir.parent.name == "hub":
        yield fan_dir.parent
        return
    with tempfile.TemporaryDirectory(prefix="fan_hub_") as tmp:
        ckpt = Path(tmp) / "hub" / "checkpoints"
        ckpt.mkdir(parents=True)
        for p in paths.values():
            (ckpt / p.name).symlink_to(p.resolve())
        yield ckpt.parent


@contextlib.contextmanager
def no_downloads(hub_dir: Path) -> Iterator[None]:
    """Torch hub pointed at `hub_dir`, and every download face-alignment could start refused
    with a MissingAssetError naming the file it wanted."""
    import face_alignment.utils as fa_utils
    import torch.hub

    def refuse(url, dst, *args, **kwargs):
        name = Path(urlparse(url).path).name
        raise _missing(Path(dst).parent / name, f"face-alignment wanted to download {name}")

    saved_dir = torch.hub.get_dir()
    saved = (torch.hub.download_url_to_file, getattr(fa_utils, "download_url_to_file", None))
    torch.hub.set_dir(str(hub_dir))
    torch.hub.download_url_to_file = refuse
    if saved[1] is not None:
        fa_utils.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.set_dir(saved_dir)
        torch.hub.download_url_to_file = saved[0]
        if saved[1] is not None:
            fa_utils.download_url_to_file = saved[1]


def pick_box(dets: np.ndarray, box_px: np.ndarray | None) -> np.ndarray | None:
    """The S3FD detection (x0, y0, x1, y1, score) to use: the one overlapping the tracked box
    most (None when none overlaps), or the most confident one when no box is known."""
    if len(dets) == 0:
        return None
    if box_px is None or not np.isfinite(box_px).all():
        return dets[int(np.argmax(dets[:, 4]))]
    x0 = np.maximum(dets[:, 0], box_px[0])
    y0 = np.maximum(dets[:, 1], box_px[1])
    x1 = np.minimum(dets[:, 2], box_px[2])
    y1 = np.minimum(dets[:, 3], box_px[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
    iou = inter / (area + (box_px[2] - box_px[0]) * (box_px[3] - box_px[1]) - inter)
    k = int(np.argmax(iou))
    return dets[k] if iou[k] > 0 else None


class FanLandmarks:
    """face-alignment's 2D FAN behind S3FD, on CPU or GPU, from the files in `fan_dir`."""

    has_dense = False

    def __init__(self, settings, fan_dir: Path | None = None, device: str = "cpu") -> None:
        self.settings = settings  # prep.config.face.FanLandmarksConfig
        self.fan_dir = Path(fan_dir) if fan_dir is not None else None
        self.device = device
        self._fa = None

    def __enter__(self) -> FanLandmarks:
        try:
            import face_alignment
        except ImportError as e:
            raise MissingDependencyError("face-alignment", hint=INSTALL_HINT) from e
        if self.fan_dir is None:
            raise MissingAssetError("fan_dir", "<unset>", FAN_URL, "assets.fan_dir")
        version = getattr(face_alignment, "__version__", "?")
        paths = check_files(self.fan_dir, expected_files(), version)
        kwargs = {"device": self.device, "flip_input": False, "face_detector": "sfd"}
        kwargs["face_detector_kwargs"] = {"path_to_detector": str(paths["s3fd"])}
        if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
            kwargs["compile"] = False  # torch.compile is slow to start and unsupported on CPU
        types = face_alignment.LandmarksType
        lm_type = types.TWO_D if hasattr(types, "TWO_D") else types._2D
        with hub_layout(self.fan_dir, paths) as hub, no_downloads(hub):
            self._fa = face_alignment.FaceAlignment(lm_type, **kwargs)
        log.info("FAN %s and S3FD %s loaded", paths["fan"], paths["s3fd"])
        return self

    def __exit__(self, *exc: object) -> None:
        self._fa = None

    def detect(
        self, frame_paths: Sequence[Path], boxes_px: np.ndarray | None = None
    ) -> LandmarkResult:
        """Landmarks of frames; `boxes_px` (T, 4) xyxy tracked face boxes (NaN rows: unknown)
        choose among S3FD's detections."""
        import cv2

        if self._fa is None:
            raise RuntimeError("use FanLandmarks as a context manager")
        res = LandmarkResult.invalid(len(frame_paths), "no_face")
        for i, p in enumerate(frame_paths):
            bgr = cv2.imread(os.fspath(p), cv2.IMREAD_COLOR)
            if bgr is None:
                res.reason[i] = "unreadable_frame"
                continue
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            dets = np.asarray(self._fa.face_detector.detect_from_image(rgb.copy()), np.float64)
            face = pick_box(dets.reshape(-1, 5), None if boxes_px is None else boxes_px[i])
            if face is None:
                continue
            pts, scores, _ = self._fa.get_landmarks_from_image(
                rgb, detected_faces=[face], return_landmark_score=True
            )
            res.points_px[i] = np.asarray(pts[0])[:, :2]
            res.scores[i] = np.clip(np.asarray(scores[0]), 0, 1)
            res.valid[i] = True
            res.reason[i] = ""
        return res
