"""Fixtures of the tracker tests: FLAME assets (FLAME engineer) and a synthetic front BFM."""

from __future__ import annotations

import pytest

from prep.models.bfm import BfmModel
from prep.models.bfm_io import load_front_mat
from tests.fixtures.flame_fixtures import full_flame_assets, tiny_flame_assets  # noqa: F401
from tests.fixtures.synthetic_bfm import write_synthetic_front_mat


@pytest.fixture(scope="session")
def bfm_front_path(tmp_path_factory):
    """A synthetic BFM_model_front.mat written once per session."""
    path = tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat"
    write_synthetic_front_mat(path)
    return path


@pytest.fixture(scope="session")
def bfm_model(bfm_front_path) -> BfmModel:
    return BfmModel(load_front_mat(bfm_front_path))
