"""Run-level schemas: dataset, frames, logger, trainer, assets."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omegaconf import MISSING


class FrameExt(StrEnum):
    """Image format of extracted frames."""

    jpg = "jpg"
    jpeg = "jpg"  # the same
    png = "png"


class LoggerBackend(StrEnum):
    wandb = "wandb"
    csv = "csv"
    none = "none"


class LoggerMode(StrEnum):
    """W&B run mode."""

    offline = "offline"
    online = "online"
    disabled = "disabled"


class Accelerator(StrEnum):
    cpu = "cpu"
    gpu = "gpu"
    cuda = "cuda"


# OmegaConf reads an enum value by its member's name, so the names are the values ("32-true" is
# no identifier: the functional form); `trainer.precision=32` arrives as an int, read as "32".
Precision = StrEnum(
    "Precision",
    [("32-true", "32-true"), ("64-true", "64-true"), ("32", "32"), ("64", "64")],
    module=__name__,
)
Precision.__doc__ = "Lightning precision of the trackers: 32-true | 64-true (32, 64: the same)."
# mypy cannot see a hook attached to a functional enum after it is made
Precision._missing_ = classmethod(  # type: ignore[method-assign,assignment]
    lambda cls, value: cls._value2member_map_.get(str(value))
)


@dataclass
class DatasetConfig:
    """Where a subject's input comes from and which stages `stage=all` runs."""

    name: str = MISSING  # dataset kind: custom | insta | hdtf | demo
    video: str | None = None  # custom: a video file (any container FFmpeg reads)
    images: str | None = None  # custom: a folder of images instead of a video
    sequence: bool | None = None  # frames in time order; null: videos yes, image folders detected
    same_person: bool = False  # a photo collection (sequence=false) shows one person: one shape
    root: str | None = None  # insta/hdtf: the dataset release folder holding subjects
    default_subject: str | None = None  # subject used when `subject` is not given
    fx: float | None = None  # dataset default focal length (original pixels), when known
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    plan: list[str] = field(default_factory=list)  # stage order for stage=all
    provided: list[str] = field(default_factory=list)  # stages whose outputs the ingest writes


@dataclass
class FramesConfig:
    """Frame extraction (stage extract_frames)."""

    fps: float | None = None  # resample to this rate by timestamps; null = native rate
    ext: FrameExt = FrameExt.jpg
    jpeg_quality: int = 95  # 1-100
    max_frames: int | None = None  # stop after this many frames (null = all)
    start_s: float | None = None  # first timestamp to keep, seconds
    end_s: float | None = None  # last timestamp to keep (exclusive), seconds
    audio: bool = True  # write audio.wav when the source has audio
    audio_rate: int | None = None  # resample audio to this rate (Hz); null = native
    workers: int = 2  # JPEG/PNG encoder threads
    image_fps: float = 25.0  # frame rate recorded for image folders (no timestamps there)


@dataclass
class LoggerConfig:
    """Experiment logging: one run per subject and stage (W&B offline by default; csv; none).

    The trackers log every loss term and their headline metrics per optimisation step through
    Lightning's own logger of the same backend, into the stage's run.
    """

    backend: LoggerBackend = LoggerBackend.wandb
    project: str = "avatar-prep"
    entity: str | None = None
    mode: LoggerMode = LoggerMode.offline  # wandb
    dir: str = "outputs/wandb"  # where offline runs and csv logs go
    tags: list[str] = field(default_factory=list)
    init_timeout_s: float = 20.0  # online: fall back to offline when W&B has not answered by then


@dataclass
class TrainerConfig:
    """The Lightning Trainer of the trackers (fit_flame, fit_3dmm_fine); group conf/trainer/.

    One Lightning step is one solver step (a Gauss-Newton step or an L-BFGS iteration of the
    FLAME fit, an Adam step of the BFM fine fit); the phases' budgets set ``max_steps``. The BFM
    fine fit takes `deterministic` and runs in 32-true on the CPU whatever the rest says.
    """

    accelerator: Accelerator | None = None  # null = from the top-level `device` (cpu, cuda:1)
    devices: int | None = None  # null = the device of `device` (cuda:1 -> GPU 1); only 1 device
    precision: Precision = Precision["32-true"]  # 64-true: the FLAME fit in float64
    deterministic: bool = False  # torch's deterministic algorithms (GPU runs repeat bitwise)


def trainer_errors(t: TrainerConfig) -> list[str]:
    """What is wrong with a `TrainerConfig` (empty when nothing), one line each."""
    if t.devices is not None and t.devices != 1:
        return [f"trainer.devices={t.devices}: the trackers fit on one device (1 or null)"]
    return []


@dataclass
class AssetsConfig:
    """Paths of every external, user-supplied file (see `prep.assets` and `stage=assets`)."""

    root: str = "${oc.env:AVATAR_PREP_ASSETS,${oc.env:HOME}/.cache/avatar-prep/assets}"
    flame2020: str = "${.root}/flame/generic_model.pkl"
    flame2023: str = "${.root}/flame/flame2023.pkl"
    flame_lmk_embedding: str = "${.root}/flame/landmark_embedding.npy"
    flame_lmk_embedding_eyes: str = "${.root}/flame/landmark_embedding_with_eyes.npy"
    flame_mediapipe_embedding: str = "${.root}/flame/mediapipe_landmark_embedding.npz"
    flame_masks: str = "${.root}/flame/FLAME_masks.pkl"
    bfm_front: str = "${.root}/bfm/BFM_model_front.mat"
    bfm_lm3d: str = "${.root}/bfm/similarity_Lm3D_all.mat"
    bfm_2009: str = "${.root}/bfm/01_MorphableModel.mat"
    bfm_exp_pca: str = "${.root}/bfm/Exp_Pca.bin"
    bfm_adnerf: str = "${.root}/bfm/3DMM_info.npy"
    rvm_mobilenetv3: str = "${.root}/matting/rvm_mobilenetv3.pth"
    rvm_resnet50: str = "${.root}/matting/rvm_resnet50.pth"
    modnet: str = "${.root}/matting/modnet_webcam_portrait_matting.ckpt"
    bisenet: str = "${.root}/parsing/79999_iter.pth"
    deca: str = "${.root}/deca/deca_model.tar"
    deep3dface: str = "${.root}/deep3dface/epoch_20.pth"
    fan_dir: str = "${oc.env:TORCH_HOME,${oc.env:HOME}/.cache/torch}/hub/checkpoints"
    intrinsic_anything_dir: str = "${.root}/IntrinsicAnything"
    insta_topology: str = "${.root}/insta/topology"
    deepspeech_features: str = "${.root}/deepspeech"


@dataclass
class StageSelect:
    """Which stage to run (conf/stage/<name>.yaml)."""

    name: str = MISSING  # a stage name, or all = the dataset's plan (set by conf/stage/<name>.yaml)
