"""Our FLAME layer against the independent float64 oracle (tests/fixtures/flame_oracle.py).

The oracle reads the model pickle and DECA's embedding itself and follows the FLAME paper and
DECA's landmark selection; our `FlameModel` (loader, LBS, subset landmark path, contour bins)
must agree with it on every vertex and on all 70 landmarks, over head yaws that cover both
contour sides and the clamp at +-39 degrees, with pitch, roll, neck, jaw, eyes and eyelids.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prep.models.flame import FlameModel
from prep.models.flame_io import load_flame_model, load_landmark_embedding
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_flame import write_full_assets, write_tiny_assets

YAWS_DEG = np.array([-55, -39.6, -35, -20, -10.5, -3, 0, 2.5, 10, 20.4, 35, 39.4, 50])


def _sweep(n_shape: int, n_expr: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = len(YAWS_DEG)
    g = np.stack([rng.uniform(-0.3, 0.3, T), np.radians(YAWS_DEG), rng.uniform(-0.2, 0.2, T)], 1)
    return {
        "shape": rng.normal(0, 1, n_shape),
        "expr": rng.normal(0, 1, (T, n_expr)),
        "global_pose": g,
        "neck_pose": rng.normal(0, 0.1, (T, 3)),
        "jaw_pose": np.stack([rng.uniform(0, 0.3, T), rng.normal(0, 0.03, T), 0 * g[:, 0]], 1),
        "eyes_pose": rng.normal(0, 0.15, (T, 6)),
        "eyelids": rng.uniform(0, 1, (T, 2)),
        "transl": rng.normal(0, 0.05, (T, 3)) + [0, 0, -1],
    }


@pytest.fixture(scope="module", params=["tiny", "full"])
def assets(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "tiny":
        return write_tiny_assets(tmp, seed=3, eyelids=True)
    public = request.getfixturevalue("flame_public")
    return write_full_assets(tmp, public, seed=3, eyelids=True)


def test_flame_layer_matches_the_oracle(assets):
    ns, ne = 60, 40
    oracle = FlameOracle.from_assets(assets, ns, ne, eyes=True)
    data = load_flame_model(assets["flame2020"], use_cache=False)
    emb = load_landmark_embedding(assets["flame_lmk_embedding_eyes"])
    model = FlameModel(data, ns, ne, emb, dtype=torch.float64)
    gt = _sweep(ns, ne)
    v_ref, lmk_ref = oracle.draw(gt)
    assert lmk_ref.shape[1] == 70 and oracle.has_eyelids
    t = {k: torch.as_tensor(x) for k, x in gt.items()}
    args = [t[k] for k in ("shape", "expr", "global_pose", "neck_pose", "jaw_pose", "eyes_pose")]
    with torch.no_grad():
        out = model(*args, transl=t["transl"], eyelids=t["eyelids"])
        lmk, _, _ = model.landmarks(*args, transl=t["transl"], eyelids=t["eyelids"])
        lmk_full, _ = model.landmarks_from_vertices(out.vertices, t["global_pose"], t["neck_pose"])
    np.testing.assert_allclose(out.vertices.numpy(), v_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lmk.numpy(), lmk_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lmk_full.numpy(), lmk_ref, rtol=0, atol=1e-12)
    # the sweep really used both contour sides and the clamped rows
    from tests.fixtures.flame_oracle import deca_yaw_bin

    rows = deca_yaw_bin(gt["global_pose"], gt["neck_pose"])
    assert (rows < 39).any() and (rows > 40).any() and {39, 78} <= set(rows.tolist())
