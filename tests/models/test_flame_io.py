"""FLAME file loading: chumpy pickles without chumpy, refusal of unsafe pickles, validation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from prep.errors import BadInputError
from prep.models.flame_io import (
    UnsafePickleError,
    load_flame_model,
    load_landmark_embedding,
    load_mediapipe_embedding,
    safe_pickle_load,
)
from tests.fixtures.synthetic_flame import build_tiny_flame_dict, write_flame_pickle


def test_chumpy_pickle_loads_without_chumpy(tiny_flame_assets):
    raw = tiny_flame_assets["flame2020"].read_bytes()
    assert b"chumpy.ch" in raw and b"csc_matrix" in raw
    data = load_flame_model(tiny_flame_assets["flame2020"], use_cache=False)
    ref = build_tiny_flame_dict()
    np.testing.assert_array_equal(data.v_template, ref["v_template"])
    np.testing.assert_array_equal(data.J_regressor, ref["J_regressor"].toarray())
    assert data.shapedirs.shape[2] == 300 and data.exprdirs.shape[2] == 100
    assert list(data.parents) == [-1, 0, 1, 1, 1]


def test_cache_round_trip(tmp_path):
    p = write_flame_pickle(tmp_path / "m.pkl", build_tiny_flame_dict())
    a = load_flame_model(p)
    assert (tmp_path / "m.pkl.npz").exists()
    b = load_flame_model(p)
    for k, v in a.to_npz_dict().items():
        np.testing.assert_array_equal(v, getattr(b, k))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_refused(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"v_template": _Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        load_flame_model(p, use_cache=False)
    with pytest.raises(UnsafePickleError):
        safe_pickle_load(pickle.dumps(_Evil()))


def test_wrong_shapes_named(tmp_path):
    d = build_tiny_flame_dict()
    d["posedirs"] = d["posedirs"][:, :, :30]
    p = write_flame_pickle(tmp_path / "bad.pkl", d)
    with pytest.raises(BadInputError, match="posedirs.*expected"):
        load_flame_model(p, use_cache=False)
    d = build_tiny_flame_dict()
    del d["J_regressor"]
    p = write_flame_pickle(tmp_path / "bad2.pkl", d)
    with pytest.raises(BadInputError, match="missing keys.*J_regressor"):
        load_flame_model(p, use_cache=False)


def test_not_a_pickle(tmp_path):
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"this is not a pickle")
    with pytest.raises(BadInputError, match="junk.pkl"):
        load_flame_model(p, use_cache=False)


def test_public_embeddings(flame_public):
    e = load_landmark_embedding(flame_public / "landmark_embedding.npy")
    assert e.n_points == 68 and not e.has_iris and e.dynamic_faces.shape == (79, 17)
    e70 = load_landmark_embedding(flame_public / "landmark_embedding_with_eyes.npy")
    assert e70.n_points == 70 and e70.has_iris
    mp = load_mediapipe_embedding(flame_public / "mediapipe_landmark_embedding.npz")
    assert mp.faces.shape == (105,) and mp.mp_index.max() < 478


def test_tiny_embeddings(tiny_flame_assets):
    e = load_landmark_embedding(tiny_flame_assets["flame_lmk_embedding_eyes"])
    assert e.n_points == 70


def test_embedding_with_wrong_counts(tmp_path, tiny_flame_assets):
    from tests.fixtures.synthetic_flame import build_tiny_embeddings, write_landmark_embedding

    e68, _, _ = build_tiny_embeddings(build_tiny_flame_dict())
    e68["static_lmk_faces_idx"] = e68["static_lmk_faces_idx"][:40]
    p = write_landmark_embedding(tmp_path / "e.npy", e68)
    with pytest.raises(BadInputError, match="40 static points"):
        load_landmark_embedding(p)
