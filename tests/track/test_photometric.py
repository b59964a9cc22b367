"""Photometric refinement on a synthetic sequence rendered from known FLAME parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prep.config.render import PhotometricConfig
from prep.models.flame import FlameModel
from prep.models.flame_io import load_flame_model, load_landmark_embedding
from prep.render import camera_to_pixels, render_mesh, world_to_camera
from prep.track.photometric import PhotometricProblem, refine_photometric
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401
from tests.fixtures.flame_oracle import FlameOracle
from tests.render.tracked import w2c_flame

T, S = 6, 64


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small renders are op-overhead bound; one thread avoids contention on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sequence(assets):
    g = torch.Generator().manual_seed(1)
    model = FlameModel(
        load_flame_model(assets["flame2020"]),
        5,
        5,
        load_landmark_embedding(assets["flame_lmk_embedding"]),
    )
    v = model.v_template
    centre = (v.min(0).values + v.max(0).values) / 2
    extent = float((v.max(0).values - v.min(0).values).max())
    f = 1.6 * S * 0.65
    K = torch.tensor([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1]])
    gt = {
        "shape": torch.zeros(5),
        "expr": 0.5 * torch.randn(T, 5, generator=g),
        "global_pose": torch.tensor([0.0, 0.3, 0.0]) + 0.05 * torch.randn(T, 3, generator=g),
        "neck_pose": torch.zeros(T, 3),
        "jaw_pose": torch.zeros(T, 3),
        "eyes_pose": torch.zeros(T, 6),
        "transl": (-centre + torch.tensor([0, 0, -1.6 * extent])).expand(T, 3).clone(),
    }
    w2c = torch.from_numpy(w2c_flame()).float().expand(T, 4, 4)
    # the truth is drawn by the independent oracle, not by the FLAME layer under test
    oracle = FlameOracle.from_assets(assets, 5, 5, eyes=False)
    verts64, lmk64 = oracle.draw({k: x.double().numpy() for k, x in gt.items()})
    verts, lmk = torch.from_numpy(verts64).float(), torch.from_numpy(lmk64).float()
    height = (v[:, 1] - v[:, 1].min()) / (v[:, 1].max() - v[:, 1].min())
    albedo = torch.stack(
        [0.5 + 0.2 * height, 0.35 + 0.1 * height, 0.3 * torch.ones_like(height)], 1
    )
    sh = torch.zeros(9, 3)
    sh[0], sh[3], sh[1] = 0.85, 0.3, -0.15
    img = render_mesh(verts, model.faces, w2c, K, (S, S), albedo=albedo, sh=sh)
    lmk_px = camera_to_pixels(world_to_camera(lmk, w2c), K)
    return model, gt, w2c, K, img.rgb, img.mask, lmk_px


def _loader(rgb, mask):
    def load(frames, hw):
        x = rgb[frames].permute(0, 3, 1, 2)
        m = mask[frames].float()[:, None]
        if tuple(hw) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=hw, mode="area")
            m = F.interpolate(m, size=hw, mode="area")
        return x.permute(0, 2, 3, 1), m[:, 0] > 0.99

    return load


def test_refinement_lowers_photometric_error_and_keeps_landmarks(tiny_flame_assets):  # noqa: F811
    model, gt, w2c, K, rgb, mask, lmk_px = _sequence(tiny_flame_assets)
    g = torch.Generator().manual_seed(2)
    init = {k: v.clone() for k, v in gt.items()}
    init["expr"] += 0.4 * torch.randn(T, 5, generator=g)
    init["global_pose"] += 0.03 * torch.randn(T, 3, generator=g)
    prob = PhotometricProblem(
        params=init,
        w2c=w2c,
        K=K,
        image_size=(S, S),
        lmk_px=lmk_px,
        lmk_w=torch.ones(lmk_px.shape[:2]),
        valid=torch.ones(T, dtype=torch.bool),
        load_frames=_loader(rgb, mask),
    )
    cfg = PhotometricConfig(sizes=[32, 64], steps=[15, 15], batch_frames=3)
    res = refine_photometric(model, prob, cfg)
    m = res.metrics
    assert m["photo_err_after"] < 0.8 * m["photo_err_before"]
    assert m["lmk_rmse_px_after"] <= m["lmk_rmse_px_before"] + 0.05
    err_before = (init["expr"] - gt["expr"]).norm()
    err_after = (res.params["expr"] - gt["expr"]).norm()
    assert err_after < err_before
    assert torch.isfinite(res.albedo).all() and res.albedo.shape == (model.n_vertices, 3)
    torch.testing.assert_close(res.params["shape"], init["shape"])  # not refined


def test_invalid_frames_are_left_untouched(tiny_flame_assets):  # noqa: F811
    model, gt, w2c, K, rgb, mask, lmk_px = _sequence(tiny_flame_assets)
    valid = torch.zeros(T, dtype=torch.bool)
    valid[1] = True
    init = {k: v.clone() + (0.1 if k == "expr" else 0.0) for k, v in gt.items()}
    prob = PhotometricProblem(
        init, w2c, K, (S, S), lmk_px, torch.ones(lmk_px.shape[:2]), valid, _loader(rgb, mask)
    )
    res = refine_photometric(model, prob, PhotometricConfig(sizes=[32], steps=[3]))
    untouched = torch.arange(T) != 1
    torch.testing.assert_close(res.params["expr"][untouched], init["expr"][untouched])
    assert not torch.equal(res.params["expr"][1], init["expr"][1])


def test_refine_tracking_reads_subject_files(tmp_path, tiny_flame_assets):  # noqa: F811
    import numpy as np

    from prep.io.files import write_image
    from prep.render.raster import camera_to_pixels as to_px
    from prep.subject import SubjectDir
    from prep.track.photometric_tracking import frame_loader, refine_tracking
    from tests.render.tracked import tiny_tracking

    model, trk = tiny_tracking(tiny_flame_assets, 4, S, S, landmarks=True)
    s = SubjectDir(tmp_path / "s")
    t = {
        k: torch.as_tensor(trk[k])
        for k in ("expr", "global_pose", "neck_pose", "jaw_pose", "eyes_pose", "transl")
    }
    verts = model(torch.as_tensor(trk["shape"]), **t).vertices
    w2c, K = torch.as_tensor(trk["w2c"]).float(), torch.as_tensor(trk["K"])
    img = render_mesh(verts, model.faces, w2c, K, (S, S))
    for i in range(4):
        write_image(s.crop_frame_path(i), (img.rgb[i].numpy() * 255).round().astype(np.uint8))
        write_image(s.parsing_path(i), img.mask[i].numpy().astype(np.uint8))  # label 1 = skin
    lmk, _, _ = model.landmarks(torch.as_tensor(trk["shape"]), **t)
    lmk_px = to_px(world_to_camera(lmk, w2c), K).numpy()
    moved = dict(trk)
    moved["transl"] = trk["transl"] + np.float32([0.004, 0.0, 0.0])
    load = frame_loader(s.crop_frame_path, s.parsing_path, s.mask_path, [1])
    cfg = PhotometricConfig(sizes=[32, 64], steps=[8, 8])
    ones = np.ones(lmk_px.shape[:2], np.float32)
    out, metrics = refine_tracking(model, moved, lmk_px, ones, load, cfg)
    assert set(out) == set(trk) and out["transl"].dtype == np.float32
    err_before = np.abs(moved["transl"] - trk["transl"]).sum()
    assert np.abs(out["transl"] - trk["transl"]).sum() < err_before
    assert metrics["lmk_rmse_px_after"] < metrics["lmk_rmse_px_before"]
    assert out["lmk_rmse_px"].shape == (4,) and np.nanmax(out["lmk_rmse_px"]) < 1.0


def test_per_frame_lighting(tiny_flame_assets):  # noqa: F811
    model, gt, w2c, K, rgb, mask, lmk_px = _sequence(tiny_flame_assets)
    rgb = rgb * torch.linspace(0.6, 1.2, T)[:, None, None, None]  # light dims and brightens
    prob = PhotometricProblem(
        {k: v.clone() for k, v in gt.items()},
        w2c,
        K,
        (S, S),
        lmk_px,
        torch.ones(lmk_px.shape[:2]),
        torch.ones(T, dtype=torch.bool),
        _loader(rgb, mask),
    )
    cfg = PhotometricConfig(sizes=[32], steps=[30], sh_per_frame=True, batch_frames=T)
    res = refine_photometric(model, prob, cfg)
    assert res.sh.shape == (T, 9, 3)
    assert res.sh[-1, 0].mean() > res.sh[0, 0].mean()  # the ambient term follows the light
    assert res.metrics["photo_err_after"] < res.metrics["photo_err_before"]


def test_nan_parameters_and_empty_regions_stay_finite(tiny_flame_assets):  # noqa: F811
    model, gt, w2c, K, rgb, mask, lmk_px = _sequence(tiny_flame_assets)
    init = {k: v.clone() for k, v in gt.items()}
    init["expr"][2] = float("nan")
    empty = torch.zeros_like(mask)
    empty[4:] = mask[4:]  # frames 0-3 have no face region at all
    prob = PhotometricProblem(
        init,
        w2c,
        K,
        (S, S),
        lmk_px,
        torch.ones(lmk_px.shape[:2]),
        torch.ones(T, dtype=torch.bool),
        _loader(rgb, empty),
    )
    res = refine_photometric(model, prob, PhotometricConfig(sizes=[32], steps=[4], batch_frames=3))
    assert torch.isnan(res.params["expr"][2]).all()  # untouched, not spread
    others = torch.arange(T) != 2
    assert torch.isfinite(res.params["expr"][others]).all()
    assert torch.isfinite(res.albedo).all() and torch.isfinite(res.sh).all()
    assert all(np.isfinite(v) for v in res.metrics.values())


def test_frame_loader_leaves_out_pixels_outside_the_frame(tmp_path):
    """Without parsing labels the whole frame is the region, except the crop's padding."""
    import numpy as np

    from prep.io.files import write_image
    from prep.subject import SubjectDir
    from prep.track.photometric_tracking import frame_loader

    s = SubjectDir(tmp_path / "s")
    write_image(s.crop_frame_path(0), np.full((S, S, 3), 90, np.uint8))
    inside = np.zeros((S, S), bool)
    inside[5:, : S - 9] = True  # the box left the frame at the top and on the right
    load = frame_loader(s.crop_frame_path, None, None, [1], lambda i: inside)
    _, region = load([0], (S, S))
    np.testing.assert_array_equal(region[0].numpy(), inside)
    _, region = frame_loader(s.crop_frame_path, None, None, [1], lambda i: None)([0], (S, S))
    assert region.all()
