"""FAN backend: the files face-alignment really loads, no downloads, S3FD boxes, one cv2."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np
import pytest
import torch

from prep.config.face import FanLandmarksConfig
from prep.errors import MissingAssetError, MissingDependencyError
from prep.vision.landmarks.fan_backend import FanLandmarks, hub_layout, pick_box
from tests.authors_code import authors_module

FAN_FILE, S3FD_FILE = "2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"


@pytest.mark.equiv  # needs nothing: runs in the default and in the equivalence environment
def test_one_distribution_owns_cv2_and_it_is_opencv_contrib():
    """mediapipe needs opencv-contrib-python; face-alignment and facexlib declare opencv-python,
    which `make fan` / `make equiv` keep out (--no-deps): a second owner of cv2/ would overwrite
    or, uninstalled later, delete the files of the first. Where they are installed, they import
    with this cv2."""
    import cv2

    owners = sorted(set(md.packages_distributions().get("cv2", [])))
    assert [o.lower() for o in owners] == ["opencv-contrib-python"], owners
    assert hasattr(cv2, "ximgproc")  # a contrib module: the contrib build is the one imported
    assert md.version("opencv-contrib-python") == "4.11.0.86"
    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    if "face-alignment" in installed:
        import face_alignment.utils  # noqa: F401 - imports cv2, skimage, numba
    if "facexlib" in installed:
        authors_module("facexlib.matting.modnet")


def test_fan_extra_does_not_pull_opencv_python():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for name in ("fan", "equiv"):
        reqs = " ".join(extras[name]).lower()
        assert "opencv-python" not in reqs and "face-alignment" not in reqs, name


def test_missing_face_alignment_names_the_no_deps_install(tmp_path):
    try:
        import face_alignment  # noqa: F401

        pytest.skip("face-alignment is installed here")
    except ImportError:
        pass
    be = FanLandmarks(FanLandmarksConfig(), fan_dir=tmp_path)
    with pytest.raises(MissingDependencyError, match="--no-deps face-alignment"), be:
        pass


def test_pick_box_follows_the_tracked_face():
    dets = np.array([[0, 0, 50, 50, 0.99], [100, 100, 180, 190, 0.7], [90, 95, 170, 160, 0.8]])
    np.testing.assert_array_equal(pick_box(dets, np.array([105.0, 110, 175, 185])), dets[1])
    np.testing.assert_array_equal(pick_box(dets, np.full(4, np.nan)), dets[0])  # most confident
    np.testing.assert_array_equal(pick_box(dets, None), dets[0])
    assert pick_box(dets, np.array([300.0, 300, 350, 350])) is None  # no overlap: no face
    assert pick_box(np.zeros((0, 5)), None) is None


def test_hub_layout_links_a_plain_folder_and_uses_a_hub_folder_as_is(tmp_path):
    plain = tmp_path / "models"
    plain.mkdir()
    paths = {k: plain / n for k, n in (("fan", FAN_FILE), ("s3fd", S3FD_FILE))}
    for p in paths.values():
        p.write_bytes(b"x")
    with hub_layout(plain, paths) as hub:
        assert sorted(p.name for p in (hub / "checkpoints").iterdir()) == [FAN_FILE, S3FD_FILE]
        assert (hub / "checkpoints" / FAN_FILE).resolve() == paths["fan"].resolve()
    assert not hub.exists()  # temporary
    real = tmp_path / "torch" / "hub" / "checkpoints"
    real.mkdir(parents=True)
    with hub_layout(real, paths) as hub:
        assert hub == real.parent


# ---- against face-alignment itself (marker equiv) ----------------------------------------------


def _random_files(folder: Path, fa) -> Path:
    """Random 2DFAN4 and S3FD weights in face-alignment's own classes, saved as 1.5 loads them
    (api.py FaceAlignment._load_native: torch.load + load_state_dict; sfd_detector.py: the same).
    S3FD's classifiers are set so that only the coarsest level (stride 128) fires: a few boxes."""
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(fa.models.FAN(4).state_dict(), folder / FAN_FILE)
    det = s3fd()
    with torch.no_grad():
        for name, m in det.named_modules():
            if name.endswith("mbox_conf"):
                m.weight.zero_()
                m.bias.fill_(0.0)
                face = 3 if name.startswith("conv3_3") else 1
                m.bias[face] = 10.0 if name == "conv7_2_mbox_conf" else -10.0
    torch.save(det.state_dict(), folder / S3FD_FILE)
    return folder


@pytest.fixture
def fa(monkeypatch):
    mod = authors_module("face_alignment")

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    return mod


@pytest.mark.equiv
def test_expected_names_come_from_face_alignments_url_tables(fa):
    from prep.assets import FAN_FILES
    from prep.vision.landmarks.fan_backend import expected_files

    assert fa.__version__ == "1.5.0"
    assert expected_files() == {"fan": FAN_FILE, "s3fd": S3FD_FILE}
    assert expected_files() == FAN_FILES  # what stage=assets checks without face-alignment


@pytest.mark.equiv
def test_missing_file_is_one_line_naming_it(fa, tmp_path):
    folder = _random_files(tmp_path / "models", fa)
    (folder / S3FD_FILE).unlink()
    be = FanLandmarks(FanLandmarksConfig(), fan_dir=folder)
    with pytest.raises(MissingAssetError, match=f"loads exactly {S3FD_FILE}"), be:
        pass


@pytest.mark.equiv
def test_download_attempts_are_refused_naming_the_file(fa, tmp_path):
    from face_alignment.utils import load_file_from_url

    from prep.vision.landmarks.fan_backend import no_downloads

    with no_downloads(tmp_path / "hub"), pytest.raises(MissingAssetError, match="3DFAN4-x.pth"):
        load_file_from_url("https://example.invalid/python-fan/3DFAN4-x.pth")


@pytest.mark.equiv
def test_plain_folder_gives_face_alignments_own_landmarks(fa, tmp_path, shared_data):
    """The same random weights in a plain folder (ours) and in a torch hub layout (face-alignment
    alone, get_landmarks_from_image with its S3FD, api.py lines 183-291): equal points and
    scores for the face we keep (the most confident S3FD box when no tracked box is given)."""
    import cv2

    photo = tmp_path / "face.png"  # the real profile photo at 256 px: S3FD's top level, 2 x 2
    small = cv2.resize(
        cv2.imread(str(shared_data / "photos" / "p11_profile_aflw00181.jpg")),
        (256, 256),
        interpolation=cv2.INTER_AREA,
    )
    cv2.imwrite(str(photo), small)
    folder = _random_files(tmp_path / "models", fa)
    hub = tmp_path / "torch" / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    for n in (FAN_FILE, S3FD_FILE):
        (hub / "checkpoints" / n).write_bytes((folder / n).read_bytes())
    with FanLandmarks(FanLandmarksConfig(), fan_dir=folder) as be:
        ours = be.detect([photo])
    assert ours.valid[0]
    saved = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        ref = fa.FaceAlignment(
            fa.LandmarksType.TWO_D, device="cpu", flip_input=False, compile=False
        )
    finally:
        torch.hub.set_dir(saved)
    rgb = cv2.imread(str(photo))[:, :, ::-1].copy()
    pts, scores, boxes = ref.get_landmarks_from_image(
        rgb, return_bboxes=True, return_landmark_score=True
    )
    k = int(np.argmax([b[4] for b in boxes]))
    np.testing.assert_array_equal(ours.points_px[0], np.asarray(pts[k], np.float32))
    np.testing.assert_allclose(ours.scores[0], np.clip(scores[k], 0, 1), rtol=1e-6)
