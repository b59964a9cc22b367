"""Basel Face Model in torch: geometry, texture, SH shading and the two public pose conventions.

Conventions:
- Model space: BFM units / 1e5 (a face is ~1.5 wide), y up, z towards the viewer, mean shape
  re-centred at the origin (as Deep3DFaceRecon and AD-NeRF do).
- Our camera convention is OpenCV (x right, y down, z forward; pixel centres at integer
  coordinates). Both public trackers use a camera looking down -z with y up; `deep3d_w2c` and
  `adnerf_w2c` turn their (angles, translation) into OpenCV world-to-camera matrices, so one
  `prep.models.camera.project` serves both.
- Deep3DFaceRecon: ``R = Rz(a2) Ry(a1) Rx(a0)``, ``v_cam_gl = R v + t - (0, 0, d)`` with d = 10;
  its image row is measured upward, so in OpenCV pixels ``cy = size - 1 - center`` (`deep3d_K`).
- AD-NeRF: ``R = Rx(e0) Ry(e1) Rz(-e2)`` and ``v_cam_gl = R v + t`` (t_z ~ -7 .. -10), projected
  as ``u = -f X / Z + cx``, ``v = f Y / Z + cy``.
- The 257-d coefficient vector (Deep3DFaceRecon / PIRenderer): id 0:80, exp 80:144, tex 144:224,
  angles 224:227, SH gamma 227:254 (3 colours x 9 bands, offset by `INIT_LIGHT`), trans 254:257.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from prep.models.bfm_io import BfmData
from prep.models.camera import FLIP_YZ, make_K
from prep.models.rotations import euler_angles_to_matrix

COEFF_SLICES = {
    "id": slice(0, 80),
    "exp": slice(80, 144),
    "tex": slice(144, 224),
    "angles": slice(224, 227),
    "gamma": slice(227, 254),
    "trans": slice(254, 257),
}
N_COEFF = 257
# Deep3DFaceRecon adds this to the first SH band of each colour (ambient light 0.8).
INIT_LIGHT = (0.8, 0, 0, 0, 0, 0, 0, 0, 0)
_GL_TO_CV = torch.tensor(FLIP_YZ)


@dataclass
class Coeffs:
    """Split 257-d coefficients, each ``(T, k)``."""

    id: torch.Tensor
    exp: torch.Tensor
    tex: torch.Tensor
    angles: torch.Tensor
    gamma: torch.Tensor
    trans: torch.Tensor

    def join(self) -> torch.Tensor:
        """Back to ``(T, 257)``."""
        return torch.cat([self.id, self.exp, self.tex, self.angles, self.gamma, self.trans], -1)


def split_coeff(coeff: torch.Tensor) -> Coeffs:
    """``(T, 257)`` -> `Coeffs`."""
    if coeff.shape[-1] < N_COEFF:
        raise ValueError(f"expected >= {N_COEFF} coefficients, got {coeff.shape[-1]}")
    return Coeffs(**{k: coeff[..., s] for k, s in COEFF_SLICES.items()})


@dataclass
class SubsetShape:
    """Mean (K, 3) and transposed bases (n, 3K) of a vertex subset; call with coefficients."""

    mean: torch.Tensor
    id_t: torch.Tensor
    exp_t: torch.Tensor

    def __call__(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """(B, n_id), (B, n_exp) -> (B, K, 3) vertices (id broadcasts from (1, n_id))."""
        offset = id_coeff @ self.id_t + exp_coeff @ self.exp_t
        return self.mean + offset.reshape(offset.shape[0], -1, 3)


class BfmModel(torch.nn.Module):
    """Linear BFM: ``shape = mean + id_base @ id + exp_base @ exp`` (unit-variance coefficients)."""

    # buffers registered in __init__, declared for the type checker
    mean_shape: torch.Tensor
    id_base: torch.Tensor
    exp_base: torch.Tensor
    mean_tex: torch.Tensor
    tex_base: torch.Tensor
    tri: torch.Tensor
    keypoints: torch.Tensor
    skin_mask: torch.Tensor

    def __init__(self, data: BfmData):
        super().__init__()
        self.variant = data.variant
        n = data.n_vertices
        self.register_buffer("mean_shape", torch.from_numpy(data.mean_shape).float())
        self.register_buffer("id_base", torch.from_numpy(data.id_base).float().reshape(n, 3, -1))
        self.register_buffer("exp_base", torch.from_numpy(data.exp_base).float().reshape(n, 3, -1))
        self.register_buffer("mean_tex", torch.from_numpy(data.mean_tex).float())
        self.register_buffer("tex_base", torch.from_numpy(data.tex_base).float().reshape(n, 3, -1))
        self.register_buffer("tri", torch.from_numpy(data.tri).long())
        self.register_buffer("keypoints", torch.from_numpy(data.keypoints).long())
        self.register_buffer("skin_mask", torch.from_numpy(data.skin_mask).bool())

    @property
    def n_id(self) -> int:
        return self.id_base.shape[-1]

    @property
    def n_exp(self) -> int:
        return self.exp_base.shape[-1]

    @property
    def n_tex(self) -> int:
        return self.tex_base.shape[-1]

    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0]

    def shape(
        self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor, idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Model-space vertices.

        Args:
            id_coeff: (B, n_id) or (1, n_id) identity coefficients (broadcast over B).
            exp_coeff: (B, n_exp) expression coefficients.
            idx: optional (K,) vertex ids: evaluate only these (landmarks need 68, not 35k).

        Returns:
            (B, K or N, 3) vertices.
        """
        mean, idb, exb = self.mean_shape, self.id_base, self.exp_base
        if idx is not None:
            mean, idb, exb = mean[idx], idb[idx], exb[idx]
        return mean + _apply_basis(idb, id_coeff) + _apply_basis(exb, exp_coeff)

    def keypoints_3d(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """(B, 68, 3) model-space landmark vertices."""
        return self.shape(id_coeff, exp_coeff, self.keypoints)

    def subset(self, idx: torch.Tensor | np.ndarray) -> SubsetShape:
        """Geometry of a fixed vertex subset, gathered once (for loops evaluating it often)."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.mean_shape.device)
        k = len(idx)
        return SubsetShape(
            self.mean_shape[idx],
            self.id_base[idx].reshape(3 * k, -1).T.contiguous(),
            self.exp_base[idx].reshape(3 * k, -1).T.contiguous(),
        )

    def texture(self, tex_coeff: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K or N, 3) albedo in [0, 1] (unclamped)."""
        mean, tb = self.mean_tex, self.tex_base
        if idx is not None:
            mean, tb = mean[idx], tb[idx]
        return (mean + _apply_basis(tb, tex_coeff)) / 255.0


def _apply_basis(basis: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """(V, 3, k) basis times (B, k) coefficients -> (B, V, 3), as one matrix product."""
    V, _, k = basis.shape
    return (coeff @ basis.reshape(V * 3, k).T).reshape(-1, V, 3)


def vertex_normals(verts: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (outward for triangles counter-clockwise from outside).

    Args:
        verts: (B, N, 3) vertices.
        tri: (F, 3) vertex ids.

    Returns:
        (B, N, 3) unit normals (zero for vertices without triangles).
    """
    v0, v1, v2 = verts[:, tri[:, 0]], verts[:, tri[:, 1]], verts[:, tri[:, 2]]
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3), length = 2 * area
    vn = torch.zeros_like(verts)
    for k in range(3):
        vn = vn.index_add(1, tri[:, k], fn)
    return F.normalize(vn, dim=-1, eps=1e-12)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon's 9 SH basis values (Lambertian-convolved) for model/GL-space normals.

    Args:
        normals: (..., 3) unit normals in the y-up camera frame the public trackers light in.

    Returns:
        (..., 9) basis values.
    """
    a = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
    c = (
        1 / math.sqrt(4 * math.pi),
        math.sqrt(3.0) / math.sqrt(4 * math.pi),
        3 * math.sqrt(5.0) / math.sqrt(12 * math.pi),
    )
    x, y, z = normals.unbind(-1)
    return torch.stack(
        [
            a[0] * c[0] * torch.ones_like(x),
            -a[1] * c[1] * y,
            a[1] * c[1] * z,
            -a[1] * c[1] * x,
            a[2] * c[2] * x * y,
            -a[2] * c[2] * y * z,
            0.5 * a[2] * c[2] / math.sqrt(3.0) * (3 * z * z - 1),
            -a[2] * c[2] * x * z,
            0.5 * a[2] * c[2] * (x * x - y * y),
        ],
        -1,
    )


def sh_shade(albedo: torch.Tensor, normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Shaded colour ``albedo * (Y(n) @ gamma)``.

    Args:
        albedo: (B, N, 3) in [0, 1].
        normals: (B, N, 3) unit normals in the lit (y-up camera) frame.
        gamma: (B, 27) SH coefficients, colour-major (r 0:9, g 9:18, b 18:27), `INIT_LIGHT` added.

    Returns:
        (B, N, 3) colours.
    """
    g = gamma.reshape(-1, 3, 9) + gamma.new_tensor(INIT_LIGHT)
    return albedo * torch.einsum("bnk,bck->bnc", sh_basis(normals), g)


def deep3d_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon angles (B, 3) radians -> (B, 3, 3) ``Rz Ry Rx``."""
    return euler_angles_to_matrix(angles.flip(-1), "ZYX")


def adnerf_rotation(euler: torch.Tensor) -> torch.Tensor:
    """AD-NeRF euler (B, 3) radians -> (B, 3, 3) ``Rx(e0) Ry(e1) Rz(-e2)``."""
    return euler_angles_to_matrix(euler * euler.new_tensor([1.0, 1.0, -1.0]), "XYZ")


def _gl_w2c(R: torch.Tensor, t_gl: torch.Tensor) -> torch.Tensor:
    flip = _GL_TO_CV.to(R)
    w2c = torch.zeros(R.shape[:-2] + (4, 4), dtype=R.dtype, device=R.device)
    w2c[..., :3, :3] = flip[:, None] * R
    w2c[..., :3, 3] = flip * t_gl
    w2c[..., 3, 3] = 1.0
    return w2c


def deep3d_w2c(angles: torch.Tensor, trans: torch.Tensor, camera_distance: float = 10.0):
    """OpenCV world-to-camera (B, 4, 4) of Deep3DFaceRecon (angles, trans)."""
    t = trans - trans.new_tensor([0.0, 0.0, camera_distance])
    return _gl_w2c(deep3d_rotation(angles), t)


def adnerf_w2c(euler: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera (B, 4, 4) of AD-NeRF (euler, trans)."""
    return _gl_w2c(adnerf_rotation(euler), trans)


def deep3d_K(focal: float = 1015.0, center: float = 112.0, size: int = 224) -> torch.Tensor:
    """OpenCV intrinsics (3, 3) of Deep3DFaceRecon's aligned image (its rows count upward)."""
    return make_K(focal, focal, center, size - 1 - center)


def gl_normals(normals_model: torch.Tensor, w2c: torch.Tensor) -> torch.Tensor:
    """Rotate model-space normals into the y-up camera frame the SH light is expressed in."""
    R_gl = w2c[..., :3, :3] * _GL_TO_CV.to(w2c)[:, None]
    return normals_model @ R_gl.transpose(-1, -2)


def sample_vertices(model: BfmModel, n: int, seed: int = 0) -> np.ndarray:
    """Ids of `n` skin vertices spread evenly (random, fixed seed) for photometric terms."""
    skin = np.flatnonzero(model.skin_mask.cpu().numpy())
    if len(skin) <= n:
        return skin
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(skin, n, replace=False))


def submesh(tri: np.ndarray, vertex_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The triangles touching `vertex_ids`, re-indexed over the vertices they use.

    Returns:
        (sub_vertices (K,), sub_tri (F', 3) indexing sub_vertices, pos (len(vertex_ids),) where
        each requested vertex sits in sub_vertices).
    """
    touch = np.isin(tri, vertex_ids).any(axis=1)
    sub_tri_global = tri[touch]
    sub_vertices = np.unique(np.concatenate([sub_tri_global.ravel(), vertex_ids]))
    sub_tri = np.searchsorted(sub_vertices, sub_tri_global)
    pos = np.searchsorted(sub_vertices, vertex_ids)
    return sub_vertices, sub_tri, pos
