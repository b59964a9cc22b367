"""FLAME layer in torch: shape, expression, pose correctives, joints, LBS, eyelids, landmarks.

Conventions: FLAME space, metres, right-handed, y up, z out of the face (a frontal OpenCV camera
has ``R = diag(1, -1, -1)``). Poses are axis-angle (radians): global 3, neck 3, jaw 3, eyes 6
(left then right eye), the 15-d pose of IMAvatar. ``transl`` is added to the posed mesh.

Landmarks follow DECA/IMAvatar: 17 jaw-contour points chosen by head yaw (the dynamic embedding)
then the 51 inner-face points, plus two iris centres with the ``_with_eyes`` embedding (68 + 2).
`FlameModel.landmarks` evaluates only the vertices the landmarks need; `landmarks_from_vertices`
is the reference on a full mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prep.errors import BadConfigError
from prep.models.flame_io import FlameModelData, LandmarkEmbedding, MediapipeEmbedding
from prep.models.lbs import blend, pose_features, rigid_transforms, skin
from prep.models.rotations import axis_angle_to_matrix

YAW_BINS = 39  # dynamic contour: yaw clamped to +-39 degrees in 1-degree bins


@dataclass
class FlameOutput:
    """Result of a FLAME evaluation.

    Attributes:
        vertices: (B, Vs, 3) posed vertices (all, or the requested subset), after transl.
        joints: (B, 5, 3) posed joints, after transl.
    """

    vertices: torch.Tensor
    joints: torch.Tensor


def contour_bins(global_pose: torch.Tensor, neck_pose: torch.Tensor) -> torch.Tensor:
    """Yaw bin of the dynamic contour for each frame, as DECA picks it.

    DECA's rule for its ``landmark_embedding*.npy`` (yfeng95/DECA ``decalib/models/FLAME.py``
    ``_find_dynamic_lmk_idx_and_bcoords`` and ``decalib/models/lbs.py`` ``rot_mat_to_euler``;
    IMAvatar's and HRAvatar's copies agree): the head rotation ``R = R_global @ R_neck``, its
    yaw ``atan2(-R[2, 0], sqrt(R[0, 0]^2 + R[1, 0]^2))`` in degrees with no sign change, rounded
    and clamped to +-39. smplx / FLAME_PyTorch negate this yaw for their own dynamic-embedding
    file; with DECA's file that sign puts the far-side contour on the hidden side of the cheek
    (tests/models/test_flame_contour.py checks the silhouette on the real template).

    Args:
        global_pose, neck_pose: (B, 3) axis-angle.

    Returns:
        (B,) int64 in [0, 78]: yaw 0..39 deg -> 0..39; yaw -1..-39 deg -> 40..78.
    """
    R = axis_angle_to_matrix(global_pose) @ axis_angle_to_matrix(neck_pose)
    sy = torch.sqrt(R[:, 0, 0] ** 2 + R[:, 1, 0] ** 2)
    yaw = torch.rad2deg(torch.atan2(-R[:, 2, 0], sy))
    # a non-finite pose (a rejected solver trial) gets bin 0 rather than an out-of-range index
    yaw = torch.round(torch.nan_to_num(yaw.detach(), nan=0.0)).clamp(-YAW_BINS, YAW_BINS).long()
    return torch.where(yaw >= 0, yaw, YAW_BINS - yaw)


class FlameModel(nn.Module):
    """Differentiable FLAME with a fast landmark path.

    Args:
        data: model arrays from `prep.models.flame_io.load_flame_model`.
        n_shape: identity components used (<= the model's, 300 for FLAME).
        n_expr: expression components used (<= the model's, 100 for FLAME).
        embedding: 68/70-point landmark embedding, or None (no landmarks).
        mediapipe: optional 105-point MediaPipe embedding.
        dtype: float32 for tracking, float64 for tests.
    """

    # buffers (registered in __init__ and _build_landmark_subset); declared for the type checker
    v_template: torch.Tensor
    dirs: torch.Tensor
    posedirs: torch.Tensor
    lbs_weights: torch.Tensor
    faces: torch.Tensor
    J_template: torch.Tensor
    J_dirs: torch.Tensor
    lmk_vertex_idx: torch.Tensor
    static_bary: torch.Tensor
    dynamic_bary: torch.Tensor
    mp_bary: torch.Tensor

    def __init__(
        self,
        data: FlameModelData,
        n_shape: int = 100,
        n_expr: int = 50,
        embedding: LandmarkEmbedding | None = None,
        mediapipe: MediapipeEmbedding | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        S, E = data.shapedirs.shape[2], data.exprdirs.shape[2]
        if not 0 < n_shape <= S:
            raise BadConfigError(f"flame.n_shape={n_shape} but the model has {S} shape components")
        if not 0 < n_expr <= E:
            raise BadConfigError(
                f"flame.n_expr={n_expr} but the model has {E} expression components"
            )
        self.n_shape, self.n_expr = n_shape, n_expr
        self.parents = [int(p) for p in data.parents]

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

        dirs = np.concatenate([data.shapedirs[:, :, :n_shape], data.exprdirs[:, :, :n_expr]], 2)
        if data.eyelids is not None:
            dirs = np.concatenate([dirs, data.eyelids], 2)
        self.has_eyelids = data.eyelids is not None
        self.register_buffer("v_template", t(data.v_template))
        self.register_buffer("dirs", t(dirs))
        self.register_buffer("posedirs", t(data.posedirs))
        self.register_buffer("lbs_weights", t(data.weights))
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.long))
        # Joints are linear in the coefficients: precompute J_regressor @ (template, dirs).
        Jr = data.J_regressor
        self.register_buffer("J_template", t(Jr @ data.v_template))
        self.register_buffer("J_dirs", t(np.einsum("jv,vck->jck", Jr, dirs)))
        self.embedding = embedding
        self.mediapipe = mediapipe
        if embedding is not None:
            self._build_landmark_subset(data.faces, embedding, mediapipe)

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def n_landmarks(self) -> int:
        return 0 if self.embedding is None else self.embedding.n_points

    # ---- coefficient and pose assembly -------------------------------------------------------
    def coeffs(self, shape: torch.Tensor, expr: torch.Tensor, eyelids: torch.Tensor | None):
        """Concatenate (B, n_shape), (B, n_expr)[, (B, 2)] into the blendshape coefficients."""
        B = expr.shape[0]
        parts = [shape.expand(B, -1) if shape.dim() == 2 else shape[None].expand(B, -1), expr]
        if self.has_eyelids:
            parts.append(eyelids if eyelids is not None else expr.new_zeros(B, 2))
        return torch.cat(parts, -1)

    @staticmethod
    def rot_mats(global_pose, neck_pose, jaw_pose, eyes_pose) -> torch.Tensor:
        """(B, 3) x3 and (B, 6) axis-angle -> (B, 5, 3, 3)."""
        aa = torch.stack([global_pose, neck_pose, jaw_pose, eyes_pose[:, :3], eyes_pose[:, 3:]], 1)
        return axis_angle_to_matrix(aa)

    def forward(
        self,
        shape: torch.Tensor,
        expr: torch.Tensor,
        global_pose: torch.Tensor,
        neck_pose: torch.Tensor,
        jaw_pose: torch.Tensor,
        eyes_pose: torch.Tensor,
        transl: torch.Tensor | None = None,
        eyelids: torch.Tensor | None = None,
        vertex_idx: torch.Tensor | None = None,
    ) -> FlameOutput:
        """Posed vertices (all or a subset) and joints.

        Args:
            shape: (n_shape,) shared or (B, n_shape). expr: (B, n_expr).
            global_pose, neck_pose, jaw_pose: (B, 3) axis-angle. eyes_pose: (B, 6).
            transl: (B, 3) or (3,) added to the posed mesh, or None.
            eyelids: (B, 2) eyelid coefficients when the model has eyelid blendshapes.
            vertex_idx: (Vs,) vertex indices to evaluate, or None for the full mesh.
        """
        c = self.coeffs(shape, expr, eyelids)
        R = self.rot_mats(global_pose, neck_pose, jaw_pose, eyes_pose)
        joints_rest = self.J_template + torch.einsum("jck,bk->bjc", self.J_dirs, c)
        joints, A = rigid_transforms(R, joints_rest, self.parents)
        if vertex_idx is None:
            tmpl, dirs, pdirs, w = self.v_template, self.dirs, self.posedirs, self.lbs_weights
        else:
            tmpl, dirs = self.v_template[vertex_idx], self.dirs[vertex_idx]
            pdirs, w = self.posedirs[vertex_idx], self.lbs_weights[vertex_idx]
        v = blend(tmpl, dirs, c)
        v = blend(v, pdirs, pose_features(R))
        v = skin(v, w, A)
        if transl is not None:
            tr = transl if transl.dim() == 2 else transl[None]
            v = v + tr[:, None]
            joints = joints + tr[:, None]
        return FlameOutput(v, joints)

    # ---- landmarks ------------------------------------------------------------------------------
    def _build_landmark_subset(self, faces, emb: LandmarkEmbedding, mp: MediapipeEmbedding | None):
        face_sets = [emb.static_faces, emb.dynamic_faces.reshape(-1)]
        if mp is not None:
            face_sets.append(mp.faces)
        vidx = np.unique(faces[np.concatenate(face_sets)].reshape(-1))
        local = np.full(faces.max() + 1, -1, dtype=np.int64)
        local[vidx] = np.arange(len(vidx))
        self.register_buffer("lmk_vertex_idx", torch.as_tensor(vidx))
        dt = self.v_template.dtype

        def reg(name: str, f_idx: np.ndarray, bary: np.ndarray) -> None:
            self.register_buffer(f"{name}_vglobal", torch.as_tensor(faces[f_idx]))
            self.register_buffer(f"{name}_vlocal", torch.as_tensor(local[faces[f_idx]]))
            self.register_buffer(f"{name}_bary", torch.as_tensor(bary, dtype=dt))

        reg("static", emb.static_faces, emb.static_bary)
        reg("dynamic", emb.dynamic_faces, emb.dynamic_bary)
        if mp is not None:
            reg("mp", mp.faces, mp.bary)

    def _gather_lmk(self, verts, bins, vkey: str, mp: bool):
        """Barycentric landmarks from ``verts (B, V*, 3)`` with index buffers of kind `vkey`."""
        B = verts.shape[0]
        ar = torch.arange(B, device=verts.device)[:, None, None]
        dyn_v = getattr(self, f"dynamic_{vkey}")[bins]  # (B, 17, 3)
        dyn = (verts[ar, dyn_v] * self.dynamic_bary[bins][..., None]).sum(-2)
        st_v = getattr(self, f"static_{vkey}")
        st = (verts[:, st_v] * self.static_bary[..., None]).sum(-2)
        lmk = torch.cat([dyn, st], 1)
        if not mp:
            return lmk, None
        mp_pts = (verts[:, getattr(self, f"mp_{vkey}")] * self.mp_bary[..., None]).sum(-2)
        return lmk, mp_pts

    def landmarks(
        self, *args, with_mediapipe: bool = False, bins: torch.Tensor | None = None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None, FlameOutput]:
        """3D landmarks evaluating only the needed vertices (same arguments as `forward`).

        Args:
            with_mediapipe: also return the dense MediaPipe points.
            bins: (B,) contour yaw bins to use instead of picking them from the pose (lets
                `torch.func` transforms run without data-dependent control flow).

        Returns:
            ``(lmk (B, 68|70, 3), mp (B, M, 3) or None, subset FlameOutput)``.
        """
        if self.embedding is None:
            raise BadConfigError("FlameModel built without a landmark embedding")
        kwargs["vertex_idx"] = self.lmk_vertex_idx
        out = self.forward(*args, **kwargs)
        if bins is None:
            bins = contour_bins(
                _arg(args, kwargs, 2, "global_pose"), _arg(args, kwargs, 3, "neck_pose")
            )
        lmk, mp = self._gather_lmk(
            out.vertices, bins, "vlocal", with_mediapipe and self.mediapipe is not None
        )
        return lmk, mp, out

    def landmarks_from_vertices(
        self,
        vertices: torch.Tensor,
        global_pose: torch.Tensor | None,
        neck_pose: torch.Tensor | None,
        bins: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Landmarks of full meshes ``(B, V, 3)`` on FLAME's vertices: contour bins from the pose,
        or `bins` (B,) when given (meshes imported without FLAME parameters)."""
        if bins is None:
            if global_pose is None or neck_pose is None:
                raise ValueError("landmarks_from_vertices needs the pose or the contour bins")
            bins = contour_bins(global_pose, neck_pose)
        return self._gather_lmk(vertices, bins, "vglobal", self.mediapipe is not None)


def _arg(args: tuple, kwargs: dict, i: int, name: str) -> torch.Tensor:
    return kwargs[name] if name in kwargs else args[i]
