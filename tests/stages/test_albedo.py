"""Stage albedo: Retinex and mesh-shading backends remove shading; IntrinsicAnything via a fake
install (arguments, gap filling); a missing install is a one-line asset error."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from prep.errors import MissingAssetError
from prep.io.files import read_image, read_json, save_npz, write_image, write_json
from prep.render import render_mesh
from prep.runner import run_plan
from prep.subject import SubjectDir
from prep.vision.albedo.decompose import linear_to_srgb, lowfreq_std, srgb_to_linear
from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401
from tests.render.tracked import tiny_tracking

T, H, W = 4, 64, 64


def _subject(root, images: list[np.ndarray], labels: list[np.ndarray]) -> SubjectDir:
    s = SubjectDir(root)
    write_json(s.video_json, {"n_frames": len(images), "fps": 25.0, "frame_ext": ".jpg"})
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        alpha = np.where(lab > 0, 255, 0).astype(np.uint8)
        write_image(s.image_path(i), np.dstack([img, alpha]))
        write_image(s.parsing_path(i), lab)
    write_json(s.manifest_path("parsing"), {"stage": "parsing", "version": 1})
    return s


def _cfg(compose_cfg, *extra):
    return compose_cfg("dataset=custom", "subject=s1", "stage=albedo", "only=true", *extra)


def _striped_albedo() -> np.ndarray:
    alb = np.full((H, W, 3), [0.55, 0.35, 0.28], np.float32)
    alb[:, ::6] *= 0.6  # high-frequency texture that must survive
    return alb


def test_retinex_removes_a_light_gradient(compose_cfg, tmp_path):
    alb = _striped_albedo()
    xs = np.linspace(1.4, 0.3, W, dtype=np.float32)
    images = [linear_to_srgb(alb * (xs[None, :, None] * (0.9 + 0.1 * t))) for t in range(T)]
    labels = [np.ones((H, W), np.uint8) for _ in range(T)]
    labels[2][:] = 0  # a frame without any face region is flagged, not a crash
    s = _subject(tmp_path / "work" / "custom" / "s1", images, labels)
    run_plan(_cfg(compose_cfg), s)
    out = read_image(s.albedo_path(0), "rgb")
    region = labels[0] > 0
    assert lowfreq_std(out, region) < 0.35 * lowfreq_std(images[0], region)
    # The texture survives: stripes stay darker than their neighbours, by about the same factor.
    lin = srgb_to_linear(out)
    ratio = lin[:, 6::6, 0].mean() / lin[:, 7::6, 0].mean()
    assert ratio == pytest.approx(0.6, abs=0.08)
    np.testing.assert_array_equal(read_image(s.albedo_path(2), "rgb"), images[2])  # kept as is
    man = s.manifest_path("albedo")
    assert man.exists()


def _tiny_mesh_frames(assets):
    model, trk = tiny_tracking(assets, T, H, W, yaw=0.2)
    K = trk["K"]
    verts = model(
        torch.zeros(5),
        torch.zeros(T, 5),
        torch.from_numpy(trk["global_pose"]),
        torch.zeros(T, 3),
        torch.zeros(T, 3),
        torch.zeros(T, 6),
        transl=torch.from_numpy(trk["transl"]),
    ).vertices
    sh = torch.zeros(9, 3)
    sh[0], sh[3], sh[2] = 0.8, 0.35, -0.25  # strong light from the side
    out = render_mesh(
        verts,
        model.faces,
        torch.from_numpy(trk["w2c"]).float(),
        torch.from_numpy(K),
        (H, W),
        albedo=torch.tensor([0.6, 0.4, 0.3]).expand(model.n_vertices, 3),
        sh=sh,
    )
    images = [linear_to_srgb(out.rgb[t].numpy()) for t in range(T)]
    labels = [out.mask[t].numpy().astype(np.uint8) for t in range(T)]
    return trk, images, labels


def test_mesh_shading_flattens_a_rendered_head(compose_cfg, tmp_path, tiny_flame_assets):  # noqa: F811
    trk, images, labels = _tiny_mesh_frames(tiny_flame_assets)
    s = _subject(tmp_path / "work" / "custom" / "s1", images, labels)
    save_npz(s.flame_tracking, **trk)
    cfg = _cfg(compose_cfg, f"assets.flame2020={tiny_flame_assets['flame2020']}")
    run_plan(cfg, s)
    region = labels[1] > 0
    before = srgb_to_linear(images[1])[region][:, 0]
    after = srgb_to_linear(read_image(s.albedo_path(1), "rgb"))[region][:, 0]
    assert region.sum() > 300
    # The rendered albedo is constant: what varies in the input is shading, and it must go.
    assert after.std() / after.mean() < 0.4 * before.std() / before.mean()
    assert read_json(s.manifest_path("albedo"))["metrics"]["mesh_frames"] == T


FAKE_IA = """
import argparse, os, sys
import numpy as np, cv2
p = argparse.ArgumentParser()  # options declared one by one, as HRAvatar's inference.py does
p.add_argument("--input_dir", required=True)
p.add_argument("--model_dir", required=True)
p.add_argument("--output_dir", required=True)
p.add_argument("--ddim", type=int, required=True)
p.add_argument("--batch_size", type=int, required=True)
p.add_argument("--image_interval", type=int, required=True)
a = p.parse_args()
assert (a.ddim, a.batch_size) == (100, 10), (a.ddim, a.batch_size)
names = sorted(os.listdir(a.input_dir))
for k, name in enumerate(names[:: a.image_interval]):
    img = cv2.imread(os.path.join(a.input_dir, name))
    img[:] = (20 * k, 100, 200)  # BGR, varies per decomposed frame
    small = cv2.resize(img, (32, 32))
    cv2.imwrite(os.path.join(a.output_dir, name.replace(".png", "_albedo.png")), small)
"""


def test_intrinsic_anything_fake_install_and_gap_filling(compose_cfg, tmp_path):
    install = tmp_path / "IntrinsicAnything"
    (install / "weights" / "albedo").mkdir(parents=True)
    (install / "inference.py").write_text(textwrap.dedent(FAKE_IA))
    images = [np.full((H, W, 3), 128, np.uint8) for _ in range(7)]
    labels = [np.ones((H, W), np.uint8) for _ in range(7)]
    s = _subject(tmp_path / "work" / "custom" / "s1", images, labels)
    cfg = _cfg(
        compose_cfg,
        "albedo=intrinsic_anything",
        f"assets.intrinsic_anything_dir={install}",
        f"albedo.backend.python={sys.executable}",
    )
    run_plan(cfg, s)
    frames = [read_image(s.albedo_path(i), "rgb") for i in range(7)]
    assert all(f.shape == (H, W, 3) for f in frames)
    assert frames[0][0, 0].tolist() == [200, 100, 0] and frames[3][0, 0].tolist() == [200, 100, 20]
    # Frame 1 lies a third of the way from frame 0 to frame 3: blended in linear light.
    expect = linear_to_srgb(2 / 3 * srgb_to_linear(frames[0]) + 1 / 3 * srgb_to_linear(frames[3]))
    np.testing.assert_array_equal(frames[1], expect)
    assert frames[6][0, 0].tolist() == [200, 100, 40]  # last decomposed frame, exactly


def test_missing_intrinsic_anything_install_names_the_asset(compose_cfg, tmp_path):
    s = _subject(
        tmp_path / "work" / "custom" / "s1",
        [np.zeros((H, W, 3), np.uint8)],
        [np.ones((H, W), np.uint8)],
    )
    cfg = _cfg(
        compose_cfg,
        "albedo=intrinsic_anything",
        f"assets.intrinsic_anything_dir={tmp_path / 'nowhere'}",
    )
    with pytest.raises(MissingAssetError, match="intrinsic_anything_dir"):
        run_plan(cfg, s)


@pytest.mark.slow
def test_real_clip_albedo_flattens_shading(compose_cfg, clip_c03):
    """c03 through the real upstream stages (8 frames): Retinex albedo removes most low-frequency
    shading inside the face region while keeping its colour."""
    cfg = compose_cfg(
        "dataset=custom",
        f"dataset.video={clip_c03}",
        "subject=c03",
        "stage=albedo",
        "extract_frames.max_frames=8",
    )
    from prep.subject import subject_dir

    s = subject_dir(cfg)
    run_plan(cfg, s)
    m = read_json(s.manifest_path("albedo"))["metrics"]
    assert m["lowfreq_std_out"] < 0.6 * m["lowfreq_std_in"]
    img, alb = read_image(s.image_path(0), "rgb"), read_image(s.albedo_path(0), "rgb")
    skin = read_image(s.parsing_path(0), "gray") == 1
    hue = lambda x: x[skin].mean(0) / x[skin].mean()  # noqa: E731  (chromaticity)
    np.testing.assert_allclose(hue(alb.astype(float)), hue(img.astype(float)), atol=0.08)
