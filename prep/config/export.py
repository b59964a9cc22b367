"""Schemas of exporters, the QA report and HDTF download."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import StrEnum


class ExportFormat(StrEnum):
    """An export target, written to export/<format>/."""

    imavatar = "imavatar"
    hravatar = "hravatar"
    insta = "insta"
    gaussianavatars = "gaussianavatars"
    nerf = "nerf"


@dataclass
class ExportConfig:
    """Exporters (stage export): one folder per format under <subject>/export/<format>/."""

    formats: list[ExportFormat] = field(default_factory=lambda: [ExportFormat.imavatar])
    only_valid: bool = True  # export only frames the tracker marked valid
    background: list[int] = field(default_factory=lambda: [255, 255, 255])  # RGB behind the matte
    imavatar_semantic: bool = True  # write semantic/ from parsing labels when they exist
    remove_cloth: bool = False  # zero the mask where parsing says cloth (label 16), as HRAvatar
    insta_test_frames: int = 350  # INSTA test split = the last N frames (clamped to T/4 when short)
    insta_val_frames: int = 20  # INSTA val split = the last N frames
    # meshes/, depth/ and canonical.obj through the FLAME layer (needs the FLAME asset and
    # assets.insta_topology); INSTA-pytorch cannot load an export without them
    insta_meshes: bool = True
    insta_remove_cloth: bool = True  # clear cloth (parsing label 16) as INSTA's postprocess.py
    ga_rgba: bool = True  # GaussianAvatars images as RGBA (false: RGB over `background`, as VHAP)
    ga_train_fraction: float = 0.7  # GaussianAvatars: first ceil(70%) timesteps train, rest test
    nerf_val_fraction: float = 0.0909  # AD-NeRF: last 1/11 of the frames are the val split
    # AD-NeRF aud.npy: this clip's DeepSpeech features (N, 16, 29); null = the asset folder
    # assets.deepspeech_features/<subject>.npy
    nerf_audio: str | None = None


@dataclass
class ReportConfig:
    """QA report (stage report): <subject>/report/index.html + <work_dir>/<dataset>/index.html."""

    max_flagged_thumbs: int = 24  # thumbnails of flagged frames shown on the page
    thumb_px: int = 128  # thumbnail edge length
    # a frame is flagged when lmk_midpoint_dev_px (its landmarks' mean distance from their
    # temporal midpoint) exceeds this
    lmk_midpoint_dev_flag_px: float = 3.0
    lmk_flag_px: float = 5.0  # a frame is flagged when its landmark RMSE exceeds this
    embed_video_mb: float = 8.0  # overlay mp4s up to this size are embedded, bigger ones linked
    embed_total_mb: float = 24.0  # stop embedding videos once the page holds this much video
    index: bool = True  # (re)write the dataset index page across subjects


@dataclass
class DownloadConfig:
    """HDTF acquisition (stage download, dataset=hdtf): annotations -> <dataset.root>/<clip>.mp4."""

    annotations: str | None = None  # folder holding *_video_url.txt etc. (null: <root>/annotations)
    url_override: str | None = None  # use this URL for every video (mirrors, tests); null = list's
    retries: int = 3  # download attempts per video (yt-dlp resumes the .part file between them)
    socket_timeout_s: float = 20.0  # yt-dlp network timeout
    max_height: int = 1080  # best stream up to this height (the release lists 720/1080)
    size: int = 512  # cropped clips are resized to size x size (HDTF's release convention)
    crf: int = 18  # H.264 quality of the cut clips
    all_videos: bool = False  # acquire every listed video, not just the subject's


# conf/hydra/launcher/{joblib,submitit_*}.yaml share their names with the plugins' schemas on
# purpose: Hydra validates our values against them. Its deprecation notice about that matching
# would print on every multirun, so it is silenced for those three files only.
warnings.filterwarnings(
    "ignore",
    message=r"\s*'hydra/launcher/(joblib|submitit_local|submitit_slurm)' is validated against",
    category=UserWarning,
)
