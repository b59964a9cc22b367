"""Fixtures of the exporter tests: a synthetic subject, and one real-clip subject exported to every
format once per session (the conformance tests read it the way each consumer's loader does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from prep.subject import SubjectDir
from tests.export.synthetic_subject import make_subject
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401

REAL_FRAMES = 24  # frames of the head-turn clip, sampled at 3 fps (8 s of turning and talking)


@pytest.fixture
def export_subject(tmp_path) -> SubjectDir:
    """A subject of T=12 frames (frames 3 and 7 invalid) with tracking, images and BFM fit."""
    return make_subject(tmp_path / "subj")


@dataclass
class RealExport:
    """A subject made from a real clip with the synthetic FLAME and BFM, exported everywhere.

    Attributes:
        subject: the subject folder (export/<format>/, lmdb/<size>/ inside).
        assets: synthetic FLAME files (flame2020, embeddings) and the BFM path.
        insta_faces: (F',3) the simplified INSTA faces the synthetic topology folder encodes.
        audio: (N,16,29) the DeepSpeech features handed to the AD-NeRF export.
        overrides: the config overrides that made it (for further runs on the same subject).
    """

    subject: SubjectDir
    assets: dict[str, Path]
    insta_faces: np.ndarray
    audio: np.ndarray
    overrides: list[str]

    def flame(self, n_shape: int, n_expr: int, dtype=None):
        """The synthetic FLAME layer with the 70-point embedding, float64 by default."""
        import torch

        from prep.models.flame import FlameModel
        from prep.models.flame_io import load_flame_model, load_landmark_embedding

        data = load_flame_model(self.assets["flame2020"])
        emb = load_landmark_embedding(self.assets["flame_lmk_embedding_eyes"])
        return FlameModel(data, n_shape, n_expr, emb, dtype=dtype or torch.float64)


def build_real_export(root: Path, clip: Path, flame_public: Path, extra=()) -> RealExport:
    """Run the pipeline on `clip` up to every export and both LMDB sizes (synthetic models)."""
    from prep.export.common import read_obj
    from prep.runner import run_plan
    from prep.subject import subject_dir
    from tests.conftest import compose
    from tests.fixtures.insta_topology import write_insta_topology
    from tests.fixtures.synthetic_bfm import write_synthetic_front_mat
    from tests.fixtures.synthetic_flame import write_full_assets

    assets = write_full_assets(root / "flame", flame_public)
    assets["bfm_front"] = root / "BFM_model_front.mat"
    write_synthetic_front_mat(assets["bfm_front"])
    _, faces = read_obj(flame_public / "head_template.obj")
    insta_faces = write_insta_topology(root / "insta_topology", faces, 5023)
    audio = np.random.default_rng(0).normal(size=(REAL_FRAMES + 5, 16, 29)).astype(np.float32)
    (root / "deepspeech").mkdir()
    np.save(root / "deepspeech" / f"{clip.stem}.npy", audio)
    overrides = [
        f"work_dir={root / 'work'}",
        "logger=none",
        "dataset=custom",
        f"dataset.video={clip}",
        "extract_frames.fps=3",
        f"extract_frames.max_frames={REAL_FRAMES}",
        "fit_flame.threads=2",
        "fit_flame.overlay_video=false",
        "fit_3dmm_fine.iters_lmk=150",
        "fit_3dmm_fine.iters_focal=60",
        "fit_3dmm_fine.focal_search_frames=16",
        "fit_3dmm_fine.overlay=false",
        *[
            f"assets.{k}={assets[k]}"
            for k in ("flame2020", "flame_lmk_embedding_eyes", "bfm_front")
        ],
        f"assets.insta_topology={root / 'insta_topology'}",
        f"assets.deepspeech_features={root / 'deepspeech'}",
        *extra,
    ]
    formats = "export.formats=[imavatar,hravatar,insta,gaussianavatars,nerf]"
    for stage in ("fit_flame", "pack_lmdb", "export"):
        cfg = compose(*overrides, f"stage={stage}", formats)
        run_plan(cfg, subject_dir(cfg))
    subject = subject_dir(cfg)
    return RealExport(subject, assets, insta_faces, audio, overrides)


@pytest.fixture(scope="session")
def real_export(tmp_path_factory, clip_c01, flame_public) -> RealExport:
    """The head-turn clip (24 frames at 3 fps) through every stage and every export, once."""
    return build_real_export(tmp_path_factory.mktemp("real_export"), clip_c01, flame_public)
