"""Typed configuration: the root `Config` schema behind conf/config.yaml.

Each section's dataclass lives in the module of its area; this module assembles them and registers
the root schema in Hydra's ConfigStore as `config_schema` (conf/config.yaml lists it first in its
defaults, so every YAML value is validated against these types).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from prep.config.backends import register_backends
from prep.config.bfm import BfmConfig, CoarseConfig, FineConfig, LmdbConfig
from prep.config.core import (
    AssetsConfig,
    DatasetConfig,
    FramesConfig,
    LoggerConfig,
    StageSelect,
    TrainerConfig,
)
from prep.config.export import DownloadConfig, ExportConfig, ReportConfig
from prep.config.face import IrisConfig, LandmarksConfig, ParsingConfig
from prep.config.flame import FlameConfig, TrackerConfig
from prep.config.perception import CropConfig, DetectConfig, MattingConfig
from prep.config.render import AlbedoConfig


@dataclass
class Config:
    """The whole run: which subject, which stage, and every stage's settings.

    Each stage's settings are the section named after the stage (``fit_flame.w.smooth_pose``,
    ``extract_frames.fps``); the other sections are shared: the models (`flame`, `bfm`), the
    model files (`assets`), the experiment `logger` and the trackers' Lightning `trainer`.
    """

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    stage: StageSelect = field(default_factory=StageSelect)
    subject: str | None = None  # subject name (dataset default when null)
    only: bool = False  # run just `stage`, failing when an upstream output is missing
    force: bool = False  # re-run the selected stage even when its manifest says it is done
    debug: bool = False  # show tracebacks instead of one-line errors
    work_dir: str = "outputs/subjects"  # subjects live in <work_dir>/<dataset>/<subject>
    device: str = "cpu"  # torch device for trackers and networks (cpu, cuda, cuda:1)
    seed: int = 0
    lock_wait: bool = False  # wait for another job's lock on the subject instead of failing
    # Camera intrinsics in pixels of the ORIGINAL video (null = dataset default or estimated).
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    # shared: models, model files, logging, the trackers' Trainer
    assets: AssetsConfig = field(default_factory=AssetsConfig)
    flame: FlameConfig = field(default_factory=FlameConfig)
    bfm: BfmConfig = field(default_factory=BfmConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # one section per stage, in the order of the plans
    download: DownloadConfig = field(default_factory=DownloadConfig)
    extract_frames: FramesConfig = field(default_factory=FramesConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    matting: MattingConfig = field(default_factory=MattingConfig)
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    iris: IrisConfig = field(default_factory=IrisConfig)
    fit_flame: TrackerConfig = field(default_factory=TrackerConfig)
    albedo: AlbedoConfig = field(default_factory=AlbedoConfig)
    fit_3dmm_coarse: CoarseConfig = field(default_factory=CoarseConfig)
    fit_3dmm_fine: FineConfig = field(default_factory=FineConfig)
    pack_lmdb: LmdbConfig = field(default_factory=LmdbConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def register_configs() -> None:
    """Register the root schema so conf/config.yaml can extend it, and every backend's settings
    for its option's YAML (`prep.config.backends`)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    register_backends(cs)


def to_typed(cfg: DictConfig) -> Config:
    """Resolve interpolations and convert a composed DictConfig to the typed `Config` object.

    Raises:
        BadConfigError: a value the schema refuses (an interpolation that gives an invalid
            choice, an unset required key), in one line.
    """
    from omegaconf.errors import OmegaConfBaseException

    from prep.config.schema_keys import value_error
    from prep.errors import BadConfigError

    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise BadConfigError(value_error(e)) from None


register_configs()


def to_plain(cfg: Config) -> dict:
    """The typed config as plain dicts and lists (for logging and manifests)."""
    plain = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    return plain  # type: ignore[return-value]
