"""SubjectDir: every artifact path of one subject, in one place.

Layout (frame i of every per-frame folder has the stem ``f"{i:06d}"``, 0-based)::

    <root>/
      meta/video.json            video metadata (fps, size, n_frames, rotation, timestamps_s, audio)
      frames/000000.jpg          original frames
      audio.wav                  audio track, when the source has one
      detect/detections.npz      per-frame face boxes
      crop/crop.npz              per-frame crop transforms;  crop/frames/000000.jpg  cropped frames
      matting/alpha/000000.png   soft alpha
      landmarks/landmarks.npz    68 + dense points;          landmarks/keypoint.json (IMAvatar)
      landmarks/dense.npz        dense MediaPipe mesh of a dlib/FAN landmarks run
      iris/iris.npz              iris centres;               iris/iris.json (IMAvatar)
      parsing/labels/000000.png  BiSeNet-convention labels
      image/000000.png           final RGBA crop;            mask/000000.png  final mask
      albedo/000000.png
      flame/tracking.npz         canonical FLAME tracking (+ flame_params.json, metrics.json)
      bfm/coarse.npz, bfm/fine.npz
      lmdb/<size>/data.mdb
      export/<format>/
      overlays/<stage>/
      report/index.html
      .manifests/<stage>.json    one manifest per finished stage (engine-owned)
      .lock                      held while a job works on the subject
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from prep.errors import BadConfigError, SubjectLockedError
from prep.io.files import TMP_PREFIX, read_json

if TYPE_CHECKING:
    from prep.config import Config


def frame_stem(i: int) -> str:
    """File stem of frame `i` in every per-frame folder."""
    return f"{i:06d}"


class SubjectDir:
    """Paths of one subject's artifacts. Nothing is created until `ensure` is called."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"SubjectDir({str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.root.name

    @staticmethod
    def ensure(path: Path) -> Path:
        """Create `path` (a folder) and return it."""
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---- source ---------------------------------------------------------------------------
    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    @property
    def video_json(self) -> Path:
        return self.meta_dir / "video.json"

    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    @cached_property
    def frame_ext(self) -> str:
        """Suffix of the extracted frames (".jpg" or ".png"), from meta/video.json."""
        if self.video_json.exists():
            return read_json(self.video_json).get("frame_ext", ".jpg")
        return ".jpg"

    def frame_path(self, i: int) -> Path:
        return self.frames_dir / f"{frame_stem(i)}{self.frame_ext}"

    def frame_names(self) -> list[str]:
        """Sorted file names of the extracted frames (temp files excluded)."""
        return _names(self.frames_dir, self.frame_ext)

    @property
    def n_frames(self) -> int:
        """Frame count recorded by extract_frames (decoded, not from headers)."""
        return int(read_json(self.video_json)["n_frames"])

    def video_fps(self, default: float = 25.0) -> float:
        """Frame rate recorded by extract_frames (`default` when it recorded none)."""
        if self.video_json.exists():
            fps = read_json(self.video_json).get("fps")
            if fps:
                return float(fps)
        return default

    @property
    def audio_wav(self) -> Path:
        return self.root / "audio.wav"

    # ---- perception -------------------------------------------------------------------------
    @property
    def detect_dir(self) -> Path:
        return self.root / "detect"

    @property
    def detections(self) -> Path:
        return self.detect_dir / "detections.npz"

    @property
    def crop_npz(self) -> Path:
        return self.root / "crop" / "crop.npz"

    @property
    def crop_dir(self) -> Path:
        return self.root / "crop" / "frames"

    def crop_frame_path(self, i: int) -> Path:
        return self.crop_dir / f"{frame_stem(i)}.jpg"

    def face_frame_path(self, i: int) -> Path:
        """The image the face stages work on: the crop frame, or the frame itself when uncropped."""
        return self.crop_frame_path(i) if self.crop_dir.is_dir() else self.frame_path(i)

    @property
    def alpha_dir(self) -> Path:
        return self.root / "matting" / "alpha"

    def alpha_path(self, i: int) -> Path:
        return self.alpha_dir / f"{frame_stem(i)}.png"

    @property
    def landmarks_dir(self) -> Path:
        return self.root / "landmarks"

    @property
    def landmarks_npz(self) -> Path:
        return self.landmarks_dir / "landmarks.npz"

    @property
    def dense_npz(self) -> Path:
        """The dense MediaPipe mesh when the landmarks backend is not MediaPipe."""
        return self.landmarks_dir / "dense.npz"

    @property
    def keypoint_json(self) -> Path:
        return self.landmarks_dir / "keypoint.json"

    @property
    def iris_npz(self) -> Path:
        return self.root / "iris" / "iris.npz"

    @property
    def iris_json(self) -> Path:
        return self.root / "iris" / "iris.json"

    @property
    def parsing_dir(self) -> Path:
        return self.root / "parsing" / "labels"

    def parsing_path(self, i: int) -> Path:
        return self.parsing_dir / f"{frame_stem(i)}.png"

    @property
    def image_dir(self) -> Path:
        return self.root / "image"

    def image_path(self, i: int) -> Path:
        return self.image_dir / f"{frame_stem(i)}.png"

    @property
    def mask_dir(self) -> Path:
        return self.root / "mask"

    def mask_path(self, i: int) -> Path:
        return self.mask_dir / f"{frame_stem(i)}.png"

    @property
    def albedo_dir(self) -> Path:
        return self.root / "albedo"

    def albedo_path(self, i: int) -> Path:
        return self.albedo_dir / f"{frame_stem(i)}.png"

    # ---- tracking ------------------------------------------------------------------------------
    @property
    def flame_dir(self) -> Path:
        return self.root / "flame"

    @property
    def flame_tracking(self) -> Path:
        return self.flame_dir / "tracking.npz"

    @property
    def flame_params_json(self) -> Path:
        return self.flame_dir / "flame_params.json"

    @property
    def flame_metrics(self) -> Path:
        return self.flame_dir / "metrics.json"

    @property
    def bfm_dir(self) -> Path:
        return self.root / "bfm"

    @property
    def bfm_coarse(self) -> Path:
        return self.bfm_dir / "coarse.npz"

    @property
    def bfm_fine(self) -> Path:
        return self.bfm_dir / "fine.npz"

    # ---- packaging and QA ----------------------------------------------------------------------
    @property
    def lmdb_dir(self) -> Path:
        return self.root / "lmdb"

    def export_dir(self, fmt: str) -> Path:
        return self.root / "export" / fmt

    def overlay_dir(self, stage: str) -> Path:
        return self.root / "overlays" / stage

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def manifest_dir(self) -> Path:
        return self.root / ".manifests"

    def manifest_path(self, stage: str) -> Path:
        return self.manifest_dir / f"{stage}.json"

    # ---- locking -------------------------------------------------------------------------------
    @contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold an exclusive lock on this subject so two jobs never write it at once.

        Args:
            wait: block until the lock is free instead of failing at once.

        Raises:
            SubjectLockedError: when another process holds the lock and `wait` is False.
        """
        self.ensure(self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise SubjectLockedError(
                    f"subject {self.root} is being processed by another job; wait for it or "
                    "pass lock_wait=true"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)


_BAD_NAME = re.compile(r"[/\\\x00]|^\.{1,2}$")


def subject_name(cfg: Config) -> str:
    """The subject's name: `subject`, the dataset default, or the custom video's file stem."""
    name = cfg.subject or cfg.dataset.default_subject
    if not name and cfg.dataset.name == "custom":
        src = cfg.dataset.video or cfg.dataset.images
        name = Path(src).stem if src else None
        if not name:
            raise BadConfigError(
                "dataset=custom needs dataset.video=<file> or dataset.images=<folder>"
            )
    if not name:
        raise BadConfigError(f"dataset={cfg.dataset.name} needs subject=<name>")
    if _BAD_NAME.search(name):
        raise BadConfigError(f"subject name {name!r} must not contain path separators")
    return name


def subject_dir(cfg: Config) -> SubjectDir:
    """The subject folder of a job: ``<work_dir>/<dataset>/<subject>``."""
    return SubjectDir(Path(cfg.work_dir) / cfg.dataset.name / subject_name(cfg))


def _names(folder: Path, suffix: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(
        e.name
        for e in os.scandir(folder)
        if e.name.endswith(suffix) and not e.name.startswith(TMP_PREFIX)
    )
