"""The MediaPipe 478 -> iBUG 68 mapping: structure, and agreement with dlib on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from prep.vision.landmarks import mapping as m
from tests.vision.face_data import photo_results


def test_mapping_is_68_distinct_mesh_vertices_with_jaw_on_face_oval():
    assert m.MP478_TO_68.shape == (68,)
    assert len(set(m.MP478_TO_68.tolist())) == 68
    assert m.MP478_TO_68.max() < 468  # no iris points among the 68
    assert set(m.MP478_TO_68[:17].tolist()) <= set(m.FACE_OVAL.tolist())
    assert m.MP478_TO_68[8] == 152  # chin


def test_outlines_follow_mediapipe_connections():
    from mediapipe.python.solutions import face_mesh_connections as c

    def edges(seq):
        return {frozenset(p) for p in zip(seq[:-1], seq[1:], strict=True)}

    def conn(s):
        return {frozenset(e) for e in s}

    assert edges(np.r_[m.FACE_OVAL, m.FACE_OVAL[:1]]) <= conn(c.FACEMESH_FACE_OVAL)
    lips = conn(c.FACEMESH_LIPS)
    for line in (m.LIPS_OUTER_UPPER, m.LIPS_OUTER_LOWER, m.LIPS_INNER_UPPER, m.LIPS_INNER_LOWER):
        assert edges(line) <= lips
    assert edges(m.RIGHT_EYE_UPPER) | edges(m.RIGHT_EYE_LOWER) <= conn(c.FACEMESH_RIGHT_EYE)
    assert edges(m.LEFT_EYE_UPPER) | edges(m.LEFT_EYE_LOWER) <= conn(c.FACEMESH_LEFT_EYE)
    assert edges(m.RIGHT_BROW_UPPER) | edges(m.RIGHT_BROW_LOWER) <= conn(c.FACEMESH_RIGHT_EYEBROW)
    assert edges(m.LEFT_BROW_UPPER) | edges(m.LEFT_BROW_LOWER) <= conn(c.FACEMESH_LEFT_EYEBROW)


def test_mp478_to_68_rejects_wrong_point_count():
    with pytest.raises(ValueError, match="478"):
        m.mp478_to_68(np.zeros((5, 68, 2)))
    assert m.mp478_to_68(np.zeros((2, 478, 3))).shape == (2, 68, 3)


# Mean distance per group between our mapped MediaPipe points and dlib's 68, in inter-ocular
# distances; measured 0.03-0.09 on 42 images (see mapping.py), tolerances leave headroom.
GROUP_TOL = {"jaw": 0.16, "brows": 0.12, "nose": 0.08, "eyes": 0.07, "lips": 0.08}


def test_mapping_agrees_with_dlib_per_group_on_real_photos(shared_data):
    photos = str(shared_data / "photos")
    mp_res, dl_res = photo_results(photos, "mediapipe"), photo_results(photos, "dlib")
    assert mp_res.valid.all() and dl_res.valid.all()
    dl = dl_res.points_px
    iod = np.linalg.norm(dl[:, 36:42].mean(1) - dl[:, 42:48].mean(1), axis=-1)
    err = np.linalg.norm(mp_res.points_px - dl, axis=-1) / iod[:, None]  # (photos, 68)
    for group, idx in m.GROUPS_68.items():
        assert err[:, idx].mean() < GROUP_TOL[group], (group, err[:, idx].mean())
