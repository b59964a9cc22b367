"""FLAME evaluated as each consumer evaluates it, in float64 numpy (conformance tests only).

Written from the consumers' code, not from ours:

- GaussianAvatars ``flame_model/flame.py`` FlameHead.forward (lines 509-537) and VHAP: shape and
  expression blendshapes, ``static_offset``, joints regressed from that shaped mesh, pose
  correctives, LBS (``flame_model/lbs.py``), then ``+ translation``.
- IMAvatar ``code/flame/FLAME.py`` (lines 55-75, 92-109): the same LBS with the template,
  shape/expression and pose bases multiplied by 4 (so the mesh and joints are 4x), 100 shape and
  50 expression components, no translation.
- HRAvatar ``scene/gaussian_head_model.py``: joints fixed at the shape-only mesh
  (``flame_joint_center``, line 151, used at 267), expression and pose correctives, LBS, then
  ``+ translation`` (293-294) and ``x flame_scale`` (line 72; 4 for tracked_params.json).

Landmarks are taken on the consumer's mesh with the fit's embedding (DECA's static + dynamic
contour faces), since a landmark is a fixed barycentric point of the mesh surface.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def rodrigues(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3)."""
    aa = np.asarray(aa, np.float64)
    return Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(aa.shape[:-1] + (3, 3))


def lbs(data, v_shaped: np.ndarray, joints: np.ndarray, pose15: np.ndarray) -> np.ndarray:
    """Pose correctives + linear blend skinning (smplx ``lbs`` steps).

    Args:
        data: FLAME arrays (posedirs (V,3,36), weights (V,5), parents (5,)).
        v_shaped: (T,V,3) shaped rest vertices. joints: (T,5,3) rest joints.
        pose15: (T,15) axis-angle [global, neck, jaw, eye, eye].
    """
    T = len(pose15)
    R = rodrigues(pose15.reshape(T, 5, 3))  # (T,5,3,3)
    feat = (R[:, 1:] - np.eye(3)).reshape(T, -1)
    v = v_shaped + np.einsum("vck,tk->tvc", data.posedirs, feat)
    parents = [int(p) for p in data.parents]
    G = np.zeros((T, 5, 4, 4))
    for j in range(5):  # batch_rigid_transform: chain of [R_j | J_j - J_parent]
        local = np.zeros((T, 4, 4))
        local[:, :3, :3] = R[:, j]
        local[:, :3, 3] = joints[:, j] - (joints[:, parents[j]] if j > 0 else 0)
        local[:, 3, 3] = 1
        G[:, j] = local if j == 0 else G[:, parents[j]] @ local
    A = G.copy()
    A[:, :, :3, 3] -= np.einsum("tjab,tjb->tja", G[:, :, :3, :3], joints)
    W = np.einsum("vj,tjab->tvab", data.weights, A)
    return np.einsum("tvab,tvb->tva", W[..., :3, :3], v) + W[..., :3, 3]


def _blend(data, shape, expr, scale=1.0, n_shape=None, n_expr=None):
    S = data.shapedirs[:, :, : n_shape or len(shape)]
    E = data.exprdirs[:, :, : n_expr or expr.shape[1]]
    base = scale * data.v_template + np.einsum("vck,k->vc", scale * S, shape[: S.shape[2]])
    return base, np.einsum("vck,tk->tvc", scale * E, expr[:, : E.shape[2]])


def flame_standard(data, shape, expr, pose15, translation, static_offset=None) -> np.ndarray:
    """GaussianAvatars / VHAP FlameHead: (T,V,3) world vertices."""
    base, e = _blend(data, np.asarray(shape, np.float64), np.asarray(expr, np.float64))
    v_shaped = base[None] + e
    if static_offset is not None:
        v_shaped = v_shaped + static_offset
    joints = np.einsum("jv,tvc->tjc", data.J_regressor, v_shaped)
    return lbs(data, v_shaped, joints, pose15) + np.asarray(translation)[:, None]


def flame_imavatar(data, shape, expr, pose15) -> np.ndarray:
    """IMAvatar's FLAME (x4 bases, 100 shape, 50 expression): (T,V,3), x4 units."""
    base, e = _blend(
        data,
        np.asarray(shape, np.float64),
        np.asarray(expr, np.float64),
        4.0,
        n_shape=100,
        n_expr=50,
    )
    v_shaped = base[None] + e
    joints = np.einsum("jv,tvc->tjc", data.J_regressor, v_shaped)
    d4 = type(
        "Scaled",
        (),
        {"posedirs": 4.0 * data.posedirs, "weights": data.weights, "parents": data.parents},
    )
    return lbs(d4, v_shaped, joints, pose15)


def flame_hravatar(data, shape, expr, pose15, translation, flame_scale: float) -> np.ndarray:
    """HRAvatar's FLAME vertices as its Gaussians ride them: (T,V,3) in its world units."""
    base, e = _blend(
        data, np.asarray(shape, np.float64), np.asarray(expr, np.float64), n_shape=100, n_expr=50
    )
    joints = np.repeat((data.J_regressor @ base)[None], len(pose15), 0)  # shape only
    v = lbs(data, base[None] + e, joints, pose15) + np.asarray(translation)[:, None]
    return flame_scale * v


def landmarks_on(vertices: np.ndarray, faces: np.ndarray, emb, bins: np.ndarray) -> np.ndarray:
    """(T,V,3) meshes -> (T,68|70,3) landmarks: contour faces of each frame's yaw bin, then the
    static ones (DECA's order)."""
    T = len(vertices)
    ar = np.arange(T)[:, None, None]
    dyn = (vertices[ar, faces[emb.dynamic_faces[bins]]] * emb.dynamic_bary[bins][..., None]).sum(-2)
    st = (vertices[:, faces[emb.static_faces]] * emb.static_bary[..., None]).sum(-2)
    return np.concatenate([dyn, st], 1)
