"""Stage fit_flame end to end on synthetic subjects: outputs, IMAvatar json round trip,
shape_from reuse, bad inputs; and a real clip with the synthetic model (marked slow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from prep.config.flame import FlameConfig
from prep.errors import BadConfigError, BadInputError, MissingAssetError, NoUsableFramesError
from prep.export.imavatar_json import read_flame_params_json
from prep.io.files import load_npz, read_json, save_npz
from prep.models.flame_tracking import TRACKING_KEYS, landmarks_px, load_tracking
from prep.runner import run_plan
from prep.subject import SubjectDir
from prep.track.flame_fit import build_flame
from tests.fixtures import flame_fixtures
from tests.fixtures.flame_oracle import FlameOracle
from tests.fixtures.synthetic_sequence import make_sequence, write_subject

T, SIZE, FOCAL = 10, 256, 900.0
tiny_flame_assets = flame_fixtures.tiny_flame_assets  # the session fixture, registered here


@pytest.fixture(scope="module")
def tiny_flame(tiny_flame_assets):
    return build_flame(tiny_flame_assets, FlameConfig(n_shape=30, n_expr=20), dense=False)


@pytest.fixture(scope="module")
def tiny_oracle(tiny_flame_assets):
    """Draws the synthetic subjects' truth (independent of the FLAME layer under test)."""
    return FlameOracle.from_assets(tiny_flame_assets, 30, 20)


def _overrides(assets, *extra):
    keys = ["flame2020", "flame_lmk_embedding_eyes"]
    return [
        "dataset=custom",
        "stage=fit_flame",
        "only=true",
        "flame.n_shape=30",
        "flame.n_expr=20",
        "fit_flame.threads=1",
        "fit_flame.overlay_max_frames=4",
        *[f"assets.{k}={assets[k]}" for k in keys],
        *extra,
    ]


def _subject(compose_cfg, tiny_oracle, name: str, seed: int = 0, **kw) -> SubjectDir:
    cfg = compose_cfg("dataset=custom", f"subject={name}")
    s = SubjectDir(f"{cfg.work_dir}/custom/{name}")
    seq = make_sequence(tiny_oracle, T, seed=seed, size=SIZE, focal=FOCAL, noise_px=0.5, **kw)
    write_subject(s, seq)
    return s


def test_outputs_and_imavatar_round_trip(compose_cfg, tiny_flame, tiny_oracle, tiny_flame_assets):
    s = _subject(compose_cfg, tiny_oracle, "s1", missing=(4, 5))
    cfg = compose_cfg(*_overrides(tiny_flame_assets, "subject=s1", f"fx={FOCAL}"))
    outcome = run_plan(cfg, s)
    res = outcome.results["fit_flame"]
    assert (
        res.headline == "lmk_rmse_px" and res.metrics["lmk_rmse_px"] < 5.0
    )  # toy model, coarse contour
    assert res.n_flagged == 1
    track = load_npz(s.flame_tracking)
    assert set(TRACKING_KEYS) <= set(track)
    assert track["expr"].shape == (T, 20) and track["w2c"].shape == (T, 4, 4)
    assert track["K"].shape == (3, 3)  # a static crop: one camera
    assert not track["valid"][4] and np.isnan(track["lmk_rmse_px"][4])
    metrics = read_json(s.flame_metrics)
    assert len(metrics["frames"]["lmk_rmse_px"]) == T and metrics["summary"]["lmk_rmse_px"] < 5
    assert (s.overlay_dir("fit_flame") / "fit.mp4").stat().st_size > 0
    # flame_params.json read back reproduces the canonical landmarks exactly
    params = read_flame_params_json(s.flame_params_json)
    assert params.pose.shape == (T, 15) and params.world_mat.shape == (T, 3, 4)
    np.testing.assert_allclose(params.world_mat[:, :, :3], np.tile(np.eye(3), (T, 1, 1)))
    assert params.intrinsics[0] < 0  # IMAvatar stores fx negated
    canon = params.canonical((SIZE, SIZE))
    lmk_json = landmarks_px(tiny_flame, canon)
    lmk_npz = landmarks_px(tiny_flame, {k: track[k] for k in track})
    np.testing.assert_allclose(lmk_json, lmk_npz, atol=1e-3)
    kp_px = (params.keypoints + 1) / 2 * SIZE
    np.testing.assert_allclose(kp_px, lmk_npz, atol=1e-3)
    # the engine skips the finished stage on a second run
    assert "fit_flame" in run_plan(cfg, s).skipped


def test_moving_crop_keeps_per_frame_intrinsics(
    compose_cfg, tiny_flame, tiny_oracle, tiny_flame_assets
):
    """crop.mode=smooth moves the crop: each frame keeps its own K; IMAvatar json is left out."""
    s = SubjectDir(f"{compose_cfg('dataset=custom', 'subject=mc').work_dir}/custom/mc")
    seq = make_sequence(tiny_oracle, T, seed=3, size=SIZE, focal=FOCAL, noise_px=0.5)
    shift = np.stack([np.linspace(0, 12, T), np.linspace(0, -8, T)], 1)  # crop px = orig + shift
    A = np.repeat(np.eye(3)[None], T, 0)
    A[:, :2, 2] = shift
    d = seq.data
    seq.data = dataclasses.replace(
        d, lmk_px=d.lmk_px + shift[:, None], iris_px=d.iris_px + shift[:, None], orig_to_crop=A
    )
    write_subject(s, seq)
    s.flame_params_json.parent.mkdir(parents=True, exist_ok=True)
    s.flame_params_json.write_text("{}")  # a stale file from an earlier static-crop run
    run_plan(compose_cfg(*_overrides(tiny_flame_assets, "subject=mc", f"fx={FOCAL}")), s)
    track = load_npz(s.flame_tracking)
    assert track["K"].shape == (T, 3, 3)
    np.testing.assert_allclose(track["K"][:, :2, 2], (SIZE - 1) / 2 + shift, atol=1e-3)
    np.testing.assert_allclose(track["K"][:, 0, 0], FOCAL, rtol=1e-6)
    kp = landmarks_px(tiny_flame, {k: track[k] for k in track})
    rmse = np.sqrt(((kp[:, :68] - (seq.clean_px[:, :68] + shift[:, None])) ** 2).sum(-1).mean())
    assert rmse < 3.0  # the fit follows the moving crop (toy model, coarse contour)
    assert not s.flame_params_json.exists()
    with pytest.raises(BadInputError, match="crop moves"):
        load_tracking(s).K  # noqa: B018  single-camera exporters refuse


def test_shape_from_reuses_shape(compose_cfg, tiny_oracle, tiny_flame_assets):
    s1 = _subject(compose_cfg, tiny_oracle, "a1", seed=1)
    run_plan(compose_cfg(*_overrides(tiny_flame_assets, "subject=a1", f"fx={FOCAL}")), s1)
    s2 = _subject(compose_cfg, tiny_oracle, "a2", seed=2)
    cfg2 = compose_cfg(
        *_overrides(tiny_flame_assets, "subject=a2", f"fx={FOCAL}", "fit_flame.shape_from=a1")
    )
    run_plan(cfg2, s2)
    np.testing.assert_array_equal(
        load_npz(s2.flame_tracking)["shape"], load_npz(s1.flame_tracking)["shape"]
    )
    with pytest.raises(Exception, match="shape_from=nobody"):
        cfg3 = compose_cfg(
            *_overrides(tiny_flame_assets, "subject=a2", "fit_flame.shape_from=nobody")
        )
        run_plan(cfg3, s2)


def test_missing_model_names_file_and_key(compose_cfg, tiny_oracle, tiny_flame_assets, tmp_path):
    s = _subject(compose_cfg, tiny_oracle, "m1")
    assets = dict(tiny_flame_assets, flame2020=tmp_path / "nowhere" / "generic_model.pkl")
    with pytest.raises(MissingAssetError) as e:
        run_plan(compose_cfg(*_overrides(assets, "subject=m1")), s)
    msg = str(e.value)
    assert "generic_model.pkl" in msg and "assets.flame2020" in msg and "flame.is.tue.mpg.de" in msg


def test_bad_inputs(compose_cfg, tiny_oracle, tiny_flame_assets):
    s = _subject(compose_cfg, tiny_oracle, "b1")
    lm = load_npz(s.landmarks_npz)
    cfg = compose_cfg(*_overrides(tiny_flame_assets, "subject=b1"))
    save_npz(s.landmarks_npz, **{**lm, "points_px": lm["points_px"][:, :60]})
    with pytest.raises(BadInputError, match=r"\(T, 68, 2\)"):
        run_plan(cfg, s)
    save_npz(s.landmarks_npz, **{**lm, "valid": np.zeros(T, bool)})
    with pytest.raises(NoUsableFramesError, match="all 10 frames"):
        run_plan(cfg, s)
    save_npz(s.landmarks_npz, **lm)
    with pytest.raises(BadConfigError, match="positive"):
        run_plan(compose_cfg(*_overrides(tiny_flame_assets, "subject=b1", "fx=-5")), s)
    with pytest.raises(BadConfigError, match="n_shape=400"):
        run_plan(compose_cfg(*_overrides(tiny_flame_assets, "subject=b1", "flame.n_shape=400")), s)


def test_sweep_headline_through_engine(compose_cfg, tiny_oracle, tiny_flame_assets):
    s = _subject(compose_cfg, tiny_oracle, "w1")
    vals = []
    for w in ("1", "1000"):
        cfg = compose_cfg(
            # as written before the focal became a prior: on this 10-frame tiny model the fit at
            # the true focal stays at 2.1 px (1.7 px with heavy smoothing), 1.0 px estimated
            *_overrides(
                tiny_flame_assets,
                "subject=w1",
                f"fit_flame.w.smooth_pose={w}",
                "fit_flame.estimate_focal=true",
            ),
        )
        vals.append(run_plan(cfg, s).results["fit_flame"].metrics["lmk_rmse_px"])
    assert vals[1] > vals[0]  # heavy smoothing must cost landmark accuracy: the knob is live


@pytest.mark.slow
def test_real_clip_with_synthetic_model(compose_cfg, clip_c01, flame_public, tmp_path):
    from tests.fixtures.synthetic_flame import write_full_assets

    assets = write_full_assets(tmp_path / "flame", flame_public)
    keys = ["flame2020", "flame_lmk_embedding_eyes"]
    cfg = compose_cfg(
        "dataset=custom",
        f"dataset.video={clip_c01}",
        "stage=fit_flame",
        "extract_frames.max_frames=24",
        "fit_flame.threads=1",
        *[f"assets.{k}={assets[k]}" for k in keys],
    )
    from prep.subject import subject_dir

    s = subject_dir(cfg)
    res = run_plan(cfg, s).results["fit_flame"]
    assert res.n_frames == 24 and np.isfinite(res.metrics["lmk_rmse_px"])
    for p in (s.flame_tracking, s.flame_params_json, s.flame_metrics):
        assert p.exists() and p.stat().st_size > 0
    assert (s.overlay_dir("fit_flame") / "fit.mp4").exists()
    assert len(read_flame_params_json(s.flame_params_json).stems) == 24
