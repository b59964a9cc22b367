"""Mesh parsing on a real face: region labels where the face parts are, neck vs cloth split."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from prep.vision.parsing import CLOTH, LABEL, final_mask
from prep.vision.parsing.mesh import face_regions, mesh_parsing
from tests.vision.face_data import PHOTOS, frontal_mesh


@pytest.fixture(scope="module")
def photo(shared_data):
    dense, hw = frontal_mesh(shared_data / "photos")
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "photos" / PHOTOS[0])), cv2.COLOR_BGR2RGB)
    return dense, rgb


def _at(lab: np.ndarray, xy) -> int:
    return int(lab[int(round(xy[1])), int(round(xy[0]))])


def test_face_regions_land_on_face_parts(photo):
    dense, rgb = photo
    lab = face_regions(dense, rgb.shape[:2])
    xy = dense[:, :2]
    assert _at(lab, xy[4]) == LABEL["nose"]  # nose tip
    assert _at(lab, xy[468]) == LABEL["l_eye"]  # subject's right iris: image left
    assert _at(lab, xy[473]) == LABEL["r_eye"]
    assert _at(lab, xy[105]) in (LABEL["l_brow"], LABEL["skin"])  # brow upper edge
    assert _at(lab, 0.5 * (xy[52] + xy[65])) == LABEL["l_brow"]
    assert _at(lab, 0.5 * (xy[0] + xy[13])) == LABEL["u_lip"]
    assert _at(lab, 0.5 * (xy[17] + xy[14])) == LABEL["l_lip"]
    assert _at(lab, xy[50]) == LABEL["skin"]  # cheek
    assert _at(lab, [2, 2]) == 0
    present = set(np.unique(lab).tolist())
    assert {LABEL[k] for k in ("skin", "nose", "l_eye", "r_eye", "u_lip", "l_lip")} <= present


def test_neck_is_skin_coloured_band_and_shirt_is_cloth(photo):
    dense, rgb = photo
    xy = dense[:, :2]
    chin, top = xy[152], xy[10]
    face_h = float(np.linalg.norm(chin - top))
    img = rgb.copy()
    h, w = img.shape[:2]
    cheek = rgb[int(xy[50, 1]) - 3 : int(xy[50, 1]) + 3, int(xy[50, 0]) - 3 : int(xy[50, 0]) + 3]
    collar = int(chin[1] + 0.3 * face_h)
    x0, x1 = int(chin[0] - 0.25 * face_h), int(chin[0] + 0.25 * face_h)
    img[int(chin[1]) + 4 : collar, :] = 230  # light background beside the neck
    img[int(chin[1]) + 4 : collar, x0:x1] = cheek.reshape(-1, 3).mean(0)  # a skin-coloured neck
    img[collar:, :] = 15  # a black shirt
    alpha = np.zeros((h, w), np.uint8)
    alpha[: int(chin[1]) + 4] = 255
    alpha[int(chin[1]) + 4 : collar, x0:x1] = 255
    alpha[collar:] = 255
    lab = mesh_parsing(dense, alpha, img)
    neck_zone = lab[int(chin[1]) + 10 : collar - 2, x0 + 2 : x1 - 2]
    assert (neck_zone == LABEL["neck"]).mean() > 0.9
    assert (lab[collar + 2 :] == CLOTH).mean() > 0.95
    assert (lab[alpha == 0] == 0).all()
    assert _at(lab, xy[4]) == LABEL["nose"]


def test_no_face_labels_foreground_only_and_mask_drops_cloth(photo):
    _, rgb = photo
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[100:200, 100:200] = 200
    lab = mesh_parsing(None, alpha, rgb)
    assert set(np.unique(lab).tolist()) == {0, LABEL["hair"]}
    labels = np.zeros((12, 12), np.uint8)
    labels[3:6] = LABEL["skin"]
    labels[8:] = CLOTH  # rows 6-7: the matte's soft edge above the clothes (background label)
    a = np.full((12, 12), 180, np.uint8)
    mask = final_mask(a, labels, True)
    assert (mask[8:] == 0).all() and (mask[6:8] == 0).all()
    assert (mask[:6] == 180).all()  # skin and far background keep the matte
    np.testing.assert_array_equal(final_mask(a, labels, False), a)
