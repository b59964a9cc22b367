"""fit_flame with fit_flame.photometric=true: the renderer's phase runs inside the stage and its
metrics reach the manifest (synthetic subject rendered from a tiny FLAME)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prep.io.files import read_json, save_npz, write_image, write_json
from prep.render import camera_to_pixels, render_mesh, world_to_camera
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401
from tests.render.tracked import tiny_tracking

T, S = 4, 96


def _subject(root, assets) -> SubjectDir:
    model, trk = tiny_tracking(assets, T, S, S, landmarks=True)
    trk["expr"] = np.random.default_rng(0).normal(0, 0.5, (T, 5)).astype(np.float32)
    p = {
        k: torch.as_tensor(trk[k])
        for k in ("expr", "global_pose", "neck_pose", "jaw_pose", "eyes_pose", "transl")
    }
    shape = torch.as_tensor(trk["shape"])
    verts = model(shape, **p).vertices
    w2c, K = torch.as_tensor(trk["w2c"]).float(), torch.as_tensor(trk["K"])
    sh = torch.zeros(9, 3)
    sh[0], sh[3] = 0.8, 0.3
    img = render_mesh(
        verts,
        model.faces,
        w2c,
        K,
        (S, S),
        albedo=torch.tensor([0.7, 0.5, 0.4]).expand(model.n_vertices, 3),
        sh=sh,
    )
    lmk, _, _ = model.landmarks(shape, **p)
    lmk_px = camera_to_pixels(world_to_camera(lmk, w2c), K)[:, :68].numpy()
    s = SubjectDir(root)
    write_json(s.video_json, {"n_frames": T, "fps": 25.0, "height": S, "width": S})
    for i in range(T):
        write_image(s.crop_frame_path(i), (img.rgb[i].numpy() * 255).round().astype(np.uint8))
        write_image(s.parsing_path(i), img.mask[i].numpy().astype(np.uint8))
    save_npz(
        s.landmarks_npz,
        points_px=lmk_px.astype(np.float32),
        scores=np.ones((T, 68)),
        valid=np.ones(T, bool),
        frame_names=np.array([f"{i:06d}.jpg" for i in range(T)]),
        image_hw=np.array([S, S]),
    )
    save_npz(s.iris_npz, iris_px=np.zeros((T, 2, 2)), valid=np.zeros((T, 2), bool))
    for st in ("landmarks", "iris"):
        write_json(s.manifest_path(st), {"stage": st, "version": 1})
    return s


@pytest.mark.slow
def test_fit_flame_runs_the_photometric_phase(compose_cfg, tmp_path, tiny_flame_assets):  # noqa: F811
    s = _subject(tmp_path / "work" / "custom" / "s1", tiny_flame_assets)
    a = tiny_flame_assets
    cfg = compose_cfg(
        "dataset=custom",
        "subject=s1",
        "stage=fit_flame",
        "only=true",
        "flame.n_shape=5",
        "flame.n_expr=5",
        f"assets.flame2020={a['flame2020']}",
        f"assets.flame_lmk_embedding_eyes={a['flame_lmk_embedding_eyes']}",
        "fit_flame.photometric=true",
        "fit_flame.overlay_max_frames=3",
        "fit_flame.photo.sizes=[48,96]",
        "fit_flame.photo.steps=[12,8]",
        "fit_flame.estimate_focal=true",
    )
    run_plan(cfg, s)
    m = read_json(s.manifest_path("fit_flame"))["metrics"]
    # The focal is estimated as when this was written (the default prior puts it a few % off the
    # truth, and from there the phase ends 7 % up: the premise below needs the right camera).
    # The landmarks are exact here, so the landmark fit is already right: the phase must not
    # make it worse (that it lowers the error of a perturbed fit is tested in tests/track). Adam
    # needs a few steps to settle: with steps [6, 4] the photometric error could end 5% up.
    assert m["photo_photo_err_after"] <= 1.02 * m["photo_photo_err_before"]
    assert m["photo_lmk_rmse_px_after"] < m["photo_lmk_rmse_px_before"] + 0.3
    assert np.isfinite(m["lmk_rmse_px"]) and m["lmk_rmse_px"] < 1.0
    assert (s.overlay_dir("shaded") / "shaded_sheet.png").exists()  # QA overlay of the fit
