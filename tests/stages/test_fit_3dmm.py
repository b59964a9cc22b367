"""Stages fit_3dmm_coarse -> fit_3dmm_fine -> pack_lmdb through the engine on a rendered subject."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.io import savemat

from prep.errors import BadInputError, MissingAssetError, NoUsableFramesError
from prep.export.lmdb import LmdbReader, crop_params_at_size
from prep.io.files import load_npz, save_npz
from prep.models.bfm import BfmModel, adnerf_rotation
from prep.models.bfm_io import load_bfm
from prep.models.rotations import rotation_angle_deg
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.stages.bfm_subject import make_bfm_subject

T = 12
FAST_LANDMARK_FIT = ["fit_3dmm_coarse.backend.iters_rigid=40", "fit_3dmm_coarse.backend.iters=80"]
FAST = [
    "fit_3dmm_fine.size=128",
    "fit_3dmm_fine.iters_focal=60",
    "fit_3dmm_fine.iters_lmk=150",
    "fit_3dmm_fine.focal_search=[200,275,350]",
    "fit_3dmm_fine.focal_search_frames=8",
    "fit_3dmm_fine.n_photo_vertices=400",
    "fit_3dmm_fine.photo_batch=6",
    "pack_lmdb.sizes=[64]",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Rendered once per module (the rasteriser is the slow part), copied per test."""
    root = tmp_path_factory.mktemp("bfm_subject")
    make_bfm_subject(root / "s1", root / "assets", T=T)
    return root


@pytest.fixture
def setup(tmp_path, compose_cfg, template):
    assets = tmp_path / "assets"
    shutil.copytree(template / "assets", assets)
    shutil.copytree(template / "s1", tmp_path / "work" / "custom" / "s1")
    subject = SubjectDir(tmp_path / "work" / "custom" / "s1")

    def cfg(stage: str, *extra: str):
        # the landmark fit's budgets are its backend's settings: only with that option chosen
        coarse = [] if "fit_3dmm_coarse=deep3dface" in extra else FAST_LANDMARK_FIT
        return compose_cfg(
            "dataset=custom",
            "subject=s1",
            f"stage={stage}",
            "only=true",
            f"assets.root={assets}",
            *coarse,
            *FAST,
            *extra,
        )

    return subject, cfg


def test_coarse_fine_and_lmdb_on_a_clip_shorter_than_a_batch(setup):
    subject, cfg = setup
    out = run_plan(cfg("fit_3dmm_coarse"), subject)
    assert out.ran == ["fit_3dmm_coarse"]
    c = load_npz(subject.bfm_coarse)
    assert c["coeff"].shape == (T, 257) and c["trans_params"].shape == (T, 5)
    assert not c["valid"][4] and np.isnan(c["lmk_rmse_px"][4]) and c["valid"].sum() == T - 1
    # the invalid frame is bridged from its neighbours, not left at zero
    np.testing.assert_allclose(c["coeff"][4], (c["coeff"][3] + c["coeff"][5]) / 2, atol=1e-5)
    assert out.results["fit_3dmm_coarse"].metrics["lmk_rmse_px"] < 1.0

    out = run_plan(cfg("fit_3dmm_fine"), subject)
    f = load_npz(subject.bfm_fine)
    truth = np.load(subject.root / "truth.npz")
    assert f["exp"].shape == (T, 64) and f["id"].shape == (1, 80) and f["gamma"].shape == (T, 27)
    assert np.isclose(float(f["focal"]), [200.0, 275.0, 350.0]).any()  # a searched candidate
    ok = f["valid"]
    err = rotation_angle_deg(
        adnerf_rotation(torch.tensor(f["euler"][ok]).double()),
        adnerf_rotation(torch.tensor(truth["euler"][ok])),
    )
    assert err.mean() < 4.0
    assert np.nanmean(f["lmk_rmse_px"]) < 1.0
    assert (subject.overlay_dir("fit_3dmm_fine") / "fit.mp4").stat().st_size > 0
    assert set(out.results["fit_3dmm_fine"].metrics) >= {"sec_per_1000_frames", "focal_px"}

    run_plan(cfg("pack_lmdb"), subject)
    with LmdbReader(subject.lmdb_dir, 64) as r:
        assert r.videos("train") == ["s1"] and r.length("s1") == T
        coeff = r.array("s1", "coeff_3dmm")
        np.testing.assert_allclose(coeff[:, :257], c["coeff"], atol=1e-6)
        # crop parameters of the stored 64 px frames (the coarse fit aligned the 128 px crops)
        np.testing.assert_allclose(
            coeff[:, 257:], crop_params_at_size(c["trans_params"], 64), rtol=1e-6
        )
        cond = r.array("s1", "condition")
        np.testing.assert_allclose(cond[:, :3], -f["euler"], atol=1e-6)
        np.testing.assert_allclose(cond[:, 6], float(f["focal"]) * 64 / 128, rtol=1e-5)
        kp = r.array("s1", "keypoint")
        assert kp.shape == (T, 68, 2) and np.isfinite(kp).all()
        assert r.frame("s1", 0).shape == (64, 64, 3)
    assert run_plan(cfg("pack_lmdb"), subject).skipped == ["pack_lmdb"]
    (subject.lmdb_dir / "64" / "data.mdb").unlink()  # a lost database is packed again
    with pytest.raises(BadInputError, match="already exists"):  # ... refusing a half target
        run_plan(cfg("pack_lmdb"), subject)
    assert run_plan(cfg("pack_lmdb", "force=true"), subject).ran == ["pack_lmdb"]


def test_existing_lmdb_is_refused_then_replaced_with_force(setup):
    subject, cfg = setup
    for stage in ("fit_3dmm_coarse", "fit_3dmm_fine", "pack_lmdb"):
        run_plan(
            cfg(
                stage,
                "fit_3dmm_fine.photo_epochs=0",
                "fit_3dmm_fine.focal_mode=fixed",
                "fit_3dmm_fine.overlay=false",
            ),
            subject,
        )
    with pytest.raises(BadInputError, match="already exists.*force=true"):
        run_plan(cfg("pack_lmdb", "pack_lmdb.video_name=other"), subject)
    run_plan(cfg("pack_lmdb", "pack_lmdb.video_name=other", "force=true"), subject)
    with LmdbReader(subject.lmdb_dir, 64) as r:
        assert r.videos("train") == r.videos("test") == ["other"] and r.n_videos() == 1


def test_missing_bfm_names_the_asset_and_where_to_get_it(setup, tmp_path):
    subject, cfg = setup
    with pytest.raises(
        MissingAssetError, match=r"bfm_front.*faces.dmi.unibas.ch.*assets.bfm_front"
    ):
        # default build_front=true, but no BFM2009 either: the front model is what is asked for
        run_plan(cfg("fit_3dmm_coarse", f"assets.bfm_front={tmp_path}/none.mat"), subject)


def test_front_model_is_built_from_bfm2009_when_only_that_is_present(setup, tmp_path):
    from tests.fixtures.synthetic_bfm import write_bfm2009_inputs

    subject, cfg = setup
    folder = tmp_path / "bfm09"
    write_bfm2009_inputs(folder)
    front = tmp_path / "built" / "BFM_model_front.mat"
    run_plan(
        cfg(
            "fit_3dmm_coarse",
            f"assets.bfm_front={front}",
            f"assets.bfm_2009={folder}/01_MorphableModel.mat",
            f"assets.bfm_exp_pca={folder}/Exp_Pca.bin",
        ),
        subject,
    )
    assert front.is_file() and load_npz(subject.bfm_coarse)["coeff"].shape == (T, 257)


def test_no_frame_with_landmarks_is_a_clear_error(setup):
    subject, cfg = setup
    lm = load_npz(subject.landmarks_npz)
    lm["valid"][:] = False
    save_npz(subject.landmarks_npz, **lm)
    with pytest.raises(NoUsableFramesError, match="no frame has usable landmarks"):
        run_plan(cfg("fit_3dmm_coarse"), subject)


@pytest.mark.slow
def test_deep3dface_backend_runs_the_regressor_on_aligned_frames(setup, tmp_path):
    from prep.vision.deep3dface import Deep3dFaceNet

    subject, cfg = setup
    torch.manual_seed(0)
    net = Deep3dFaceNet()
    with torch.no_grad():
        for layer, bias in zip(
            net.final_layers, (0.1, -0.2, 0.0, 0.05, 0.0, 0.01, 0.2), strict=True
        ):
            layer.weight.zero_()
            layer.bias.fill_(bias)
    ckpt = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": net.state_dict()}, ckpt)
    overrides = ("fit_3dmm_coarse=deep3dface", f"assets.deep3dface={ckpt}")
    with pytest.raises(MissingAssetError, match="bfm_lm3d"):  # the regressor's alignment points
        run_plan(cfg("fit_3dmm_coarse", *overrides), subject)
    model = BfmModel(load_bfm("front", tmp_path / "assets" / "bfm" / "BFM_model_front.mat"))
    lm68 = model.mean_shape[model.keypoints].numpy().astype(np.float32)
    savemat(tmp_path / "assets" / "bfm" / "similarity_Lm3D_all.mat", {"lm": lm68})
    out = run_plan(cfg("fit_3dmm_coarse", *overrides), subject)
    c = load_npz(subject.bfm_coarse)
    assert str(c["backend"]) == "deep3dface"
    np.testing.assert_allclose(c["coeff"][:, 0:80], 0.1, atol=1e-5)  # the heads' constant output
    np.testing.assert_allclose(c["coeff"][:, 224:227], 0.05, atol=1e-5)
    assert np.isfinite(out.results["fit_3dmm_coarse"].metrics["lmk_rmse_px"])


def test_adnerf_variant_gives_otavatar_id_and_expression_sizes(setup, tmp_path):
    from tests.fixtures.synthetic_bfm import write_adnerf

    subject, cfg = setup
    write_adnerf(tmp_path / "adnerf")
    extra = (
        "bfm.variant=adnerf",
        f"assets.bfm_adnerf={tmp_path}/adnerf/3DMM_info.npy",
        "fit_3dmm_fine.focal_mode=fixed",
        "fit_3dmm_fine.focal=275",
        "fit_3dmm_fine.photo_epochs=1",
        "fit_3dmm_fine.overlay=false",
    )
    run_plan(cfg("fit_3dmm_coarse"), subject)
    out = run_plan(cfg("fit_3dmm_fine", *extra), subject)
    f = load_npz(subject.bfm_fine)
    assert f["id"].shape == (1, 100) and f["exp"].shape == (T, 79) and str(f["variant"]) == "adnerf"
    assert out.results["fit_3dmm_fine"].metrics["lmk_rmse_px"] < 1.5
    run_plan(cfg("pack_lmdb", *extra), subject)
    with LmdbReader(subject.lmdb_dir, 64) as r:
        assert r.array("s1", "id").shape == (1, 100)
