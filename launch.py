"""avatar-prep entry point: compose conf/config.yaml and run one job (see README)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import prep.config  # noqa: F401  (registers the typed schema)
from prep.app import main as run_job
from prep.cli import precheck
from prep.hydra_callbacks import FAILED_JOBS


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    precheck(Path(__file__).parent / "conf")
    main()
    if FAILED_JOBS:  # a multirun finishes every job, then says by its status that some failed
        sys.exit(1)
