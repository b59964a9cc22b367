"""Sequence or photo collection, judged from how alike consecutive images are."""

from __future__ import annotations

import numpy as np

from prep.datasets.sequence import judge, pair_similarity, thumbnail
from tests.conftest import compose
from tests.vision.perception_data import clip_frames, letterbox, photo


def _pairs(images: list[np.ndarray]) -> np.ndarray:
    return pair_similarity(np.stack([thumbnail(im) for im in images]), None)


def test_video_frames_two_seconds_apart_are_a_sequence_and_portraits_are_not(
    clip_c01, clip_c03, shared_data
):
    cfg = compose("dataset=custom", "dataset.images=/any/folder")
    for clip in (clip_c01, clip_c03):
        frames = clip_frames(clip, 400, step=50)  # 2 s apart: a head turn, a nod
        assert judge(cfg, _pairs(frames))[0]
    people = [letterbox(photo(shared_data, p)) for p in ("p02", "p08", "p11")]
    people.insert(1, clip_frames(clip_c01, 1)[0])
    sequence, line = judge(cfg, _pairs(people))
    assert not sequence and "photo collection" in line and "\n" not in line
    assert not judge(cfg, _pairs(people[:1]))[0]  # one image: a photo


def test_declared_or_video_needs_no_frames():
    pairs = np.array([np.nan, 0.1, 0.0])
    assert judge(compose("dataset=custom", "dataset.images=/f", "dataset.sequence=true"), pairs)[0]
    assert not judge(
        compose("dataset=custom", "dataset.video=/v.mp4", "dataset.sequence=false"),
        np.array([np.nan, 1.0]),
    )[0]
    assert judge(compose("dataset=custom", "dataset.video=/v.mp4"), pairs)[0]  # a video
