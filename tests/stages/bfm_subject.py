"""A synthetic subject for the 3DMM stages: rendered BFM frames with their exact landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prep.io.files import save_npz, write_image, write_json
from prep.models.bfm import BfmModel, adnerf_w2c, gl_normals, sh_shade, vertex_normals
from prep.models.bfm_io import load_front_mat
from prep.models.camera import make_K
from prep.render.mesh import render_mesh
from prep.render.shading import default_sh
from prep.subject import SubjectDir
from tests.fixtures.synthetic_bfm import adnerf_sequence, write_synthetic_front_mat

SIZE = 128
FOCAL = 1100 * SIZE / 512


def render_frames(model: BfmModel, seq: dict, gamma: np.ndarray | None = None) -> np.ndarray:
    """(T, S, S, 3) uint8 renders (vertex colours from `sh_shade`) on a grey background."""
    T, S = len(seq["euler"]), seq["size"]
    with torch.no_grad():
        verts = model.shape(
            torch.tensor(seq["id"]).float().expand(T, -1), torch.tensor(seq["exp"]).float()
        )
        w2c = adnerf_w2c(torch.tensor(seq["euler"]).float(), torch.tensor(seq["trans"]).float())
        n_gl = gl_normals(vertex_normals(verts, model.tri), w2c)
        g = torch.zeros(T, 27) if gamma is None else torch.as_tensor(gamma).float()
        colour = sh_shade(model.texture(torch.zeros(1, model.n_tex)).expand(T, -1, -1), n_gl, g)
        c = (S - 1) / 2
        out = render_mesh(
            verts,
            model.tri,
            w2c,
            make_K(seq["focal"], seq["focal"], c, c),
            (S, S),
            albedo=colour.clamp(0, 1),
            sh=default_sh(intensity=0.0),
        )
        rgb = torch.where(out.mask[..., None], out.rgb, torch.full_like(out.rgb, 0.35))
    return (rgb.clamp(0, 1) * 255).round().byte().numpy()


def make_bfm_subject(
    root: Path, assets: Path, T: int = 12, invalid: tuple[int, ...] = (4,)
) -> SubjectDir:
    """Subject with crop frames, landmarks (frames `invalid` faceless) and a landmarks manifest."""
    bfm_path = assets / "bfm" / "BFM_model_front.mat"
    if not bfm_path.exists():
        write_synthetic_front_mat(bfm_path)
    model = BfmModel(load_front_mat(bfm_path))
    seq = adnerf_sequence(model, T, FOCAL, SIZE, seed=5)
    frames = render_frames(model, seq)
    s = SubjectDir(root)
    write_json(s.video_json, {"n_frames": T, "fps": 25.0, "width": SIZE, "height": SIZE})
    for i in range(T):
        write_image(s.crop_frame_path(i), frames[i])
    pts = seq["lmk_px"].astype(np.float32)
    valid = np.ones(T, bool)
    valid[list(invalid)] = False
    pts[~valid] = np.nan
    save_npz(
        s.landmarks_npz,
        frame_names=np.array([f"{i:06d}.jpg" for i in range(T)]),
        points_px=pts,
        scores=np.where(valid[:, None], 1.0, 0.0).repeat(68, 1).astype(np.float32),
        valid=valid,
        image_hw=np.array([SIZE, SIZE]),
    )
    write_json(s.manifest_path("landmarks"), {"stage": "landmarks", "version": 1})
    np.savez(root / "truth.npz", **{k: v for k, v in seq.items() if isinstance(v, np.ndarray)})
    return s
