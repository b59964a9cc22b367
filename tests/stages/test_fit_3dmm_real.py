"""The 3DMM stages on real detections: the first 50 frames of the news-anchor clip.

The BFM is the synthetic one (the real model is licence-gated), so the fit error is that of a
generic face shape; what is checked is that real, jittery MediaPipe landmarks flow through
coarse -> fine -> LMDB with sane numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from prep.export.lmdb import LmdbReader
from prep.io.files import load_npz
from prep.runner import run_plan
from prep.subject import SubjectDir
from tests.fixtures.synthetic_bfm import write_synthetic_front_mat


@pytest.mark.slow
def test_real_clip_through_coarse_fine_and_lmdb(clip_c03, compose_cfg, tmp_path):
    bfm = tmp_path / "BFM_model_front.mat"
    write_synthetic_front_mat(bfm)
    common = (
        f"dataset.video={clip_c03}",
        "dataset=custom",
        "extract_frames.max_frames=50",
        f"assets.bfm_front={bfm}",
        "fit_3dmm_fine.iters_lmk=150",
        "fit_3dmm_fine.iters_focal=60",
        "fit_3dmm_fine.focal_search_frames=16",
        "fit_3dmm_fine.overlay=false",
    )
    cfg = compose_cfg(*common, "stage=landmarks")
    subject = SubjectDir(tmp_path / "work" / "custom" / clip_c03.stem)
    run_plan(cfg, subject)
    for stage in ("fit_3dmm_coarse", "fit_3dmm_fine", "pack_lmdb"):
        out = run_plan(compose_cfg(*common, f"stage={stage}", "only=true"), subject)
        assert out.ran == [stage]
    coarse, fine = load_npz(subject.bfm_coarse), load_npz(subject.bfm_fine)
    assert coarse["valid"].mean() > 0.9
    assert np.nanmedian(coarse["lmk_rmse_px"]) < 12  # aligned 224 px, generic face shape
    assert np.nanmedian(fine["lmk_rmse_px"]) < 20  # crop px (512), generic face shape
    assert 600 <= float(fine["focal"]) <= 1400
    # a frontal anchor: small head rotation, steady over 2 s
    assert np.degrees(np.abs(fine["euler"])).max() < 30
    with LmdbReader(subject.lmdb_dir, 256) as r:
        name = r.videos()[0]
        assert r.length(name) == 50 and r.frame(name, 49).shape == (256, 256, 3)
        kp = r.array(name, "keypoint")
        assert ((kp > 0) & (kp < 256)).all()
