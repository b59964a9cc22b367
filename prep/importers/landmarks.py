"""Landmarks and irises of an imported tracking, for layouts that ship no detections.

VHAP, metrical-tracker and INSTA folders hold a FLAME fit (parameters or meshes) but no 2D
landmarks; fit_flame needs them. We take the fit's own 68 + 2 points: the FLAME landmark
embedding (DECA's static faces, the jaw contour picked by head yaw, the iris centres of the
``_with_eyes`` embedding) evaluated on the imported mesh and projected with the imported camera.

The contour bin follows the head's yaw as the camera sees it (DECA picks it from the FLAME pose
with a frontal camera): the rotation handed to `prep.models.flame.contour_bins` is the head's
rotation expressed in fit_flame's world, ``F^-1 R_w2c R_head`` with ``F = diag(1, -1, -1)``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from prep.models.camera import CV_TO_GL, project_np
from prep.models.flame import contour_bins
from prep.models.flame_tracking import landmarks_px


def view_bins(w2c: np.ndarray, head_R: np.ndarray, neck_pose: np.ndarray) -> np.ndarray:
    """(T,) contour bins for heads rotated by `head_R` (T,3,3) seen through `w2c` (T,4,4)."""
    R_eff = CV_TO_GL @ np.asarray(w2c)[:, :3, :3] @ head_R
    aa = Rotation.from_matrix(R_eff).as_rotvec()
    t = torch.as_tensor
    return contour_bins(t(aa), t(np.asarray(neck_pose, np.float64))).numpy()


def from_params(model, params: dict, w2c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(T,70,2) landmarks of FLAME parameters (canonical arrays) through the camera."""
    head_R = Rotation.from_rotvec(params["global_pose"]).as_matrix()
    bins = torch.as_tensor(view_bins(w2c, head_R, params["neck_pose"]))
    return landmarks_px(model, params, w2c, K, bins=bins)


HEAD_WEIGHT = 0.95  # vertices skinned this much to FLAME's head joint (1) move rigidly with it


def head_rotation(vertices: np.ndarray, reference: np.ndarray, head: np.ndarray) -> np.ndarray:
    """(T,3,3) rotation of each mesh's head (T,V,3) relative to `reference` (V,3) (Kabsch over
    the `head` vertex indices: the rigid part DECA's contour rule reads, global @ neck)."""
    a = reference[head] - reference[head].mean(0)
    out = np.zeros((len(vertices), 3, 3))
    for k, v in enumerate(vertices[:, head]):  # one 3x3 SVD per frame
        b = v - v.mean(0)
        U, _, Vt = np.linalg.svd(b.T @ a)
        d = np.sign(np.linalg.det(U @ Vt))
        out[k] = U @ np.diag([1.0, 1.0, d]) @ Vt
    return out


def from_meshes(model, vertices, w2c, K, reference: np.ndarray | None = None) -> np.ndarray:
    """(T,70,2) landmarks of meshes (T,V,3) on FLAME's vertex order through the camera.

    Args:
        model: float64 FLAME layer with the landmark embedding (its vertex order and weights).
        reference: (V,3) the subject's unposed mesh (INSTA's canonical.obj: its shape, jaw open,
            no expression) to measure head rotations against; FLAME's template when None.
    """
    ref = model.v_template.double().numpy() if reference is None else reference
    head = np.flatnonzero(model.lbs_weights[:, 1].double().numpy() > HEAD_WEIGHT)
    bins = view_bins(w2c, head_rotation(vertices, ref, head), np.zeros((len(vertices), 3)))
    v = torch.as_tensor(np.asarray(vertices, np.float64), dtype=model.v_template.dtype)
    lmk, _ = model.landmarks_from_vertices(v, None, None, bins=torch.as_tensor(bins))
    return project_np(lmk.double().numpy(), w2c, K)
