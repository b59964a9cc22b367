"""FLAME meshes of tracked frames for the exporters that ship meshes (INSTA), and the INSTA
simplified topology.

INSTA's meshes use a simplified FLAME topology (8,090 faces on FLAME's 5,023 vertices) made by
INSTA's ``scripts/simplification.py``: it places the FLAME vertices into a larger template
(``topology/average.npy`` at ``topology/head_idxs.npy``), builds the template's sparse faces
(``topology/template_face_sparse.npy``) and removes the vertices flagged in
``topology/flame_vertices_mask.npy`` with open3d's ``remove_vertices_by_mask``, which drops every
face touching them and renumbers the kept vertices in order. INSTA-pytorch's ``insta/masks.py``
face ids (lips) index that topology. The files are INSTA's (MPI non-commercial licence), so the
user supplies them (asset ``insta_topology``: INSTA's ``scripts/topology`` folder, or
INSTA-pytorch's ``insta/mesh_masks/canonical.obj``, whose faces are the same); `insta_topology`
repeats the transfer on our vertices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prep.errors import BadInputError
from prep.export.common import read_obj
from prep.models.flame_tracking import Tracking, evaluate, rest_params

TOPOLOGY_FILES = ("head_idxs.npy", "flame_vertices_mask.npy", "template_face_sparse.npy")
METRICAL_CANONICAL_JAW = np.deg2rad(12.0)  # metrical-tracker save_canonical: jaw open 12 deg


@dataclass
class Topology:
    """A mesh topology over FLAME's vertices.

    Attributes:
        vertex_order: (V',) FLAME vertex index of each output vertex.
        faces: (F,3) 0-based indices into the output vertices.
    """

    vertex_order: np.ndarray
    faces: np.ndarray

    def apply(self, flame_vertices: np.ndarray) -> np.ndarray:
        """(..., V, 3) FLAME vertices -> (..., V', 3) vertices of this topology."""
        return np.asarray(flame_vertices)[..., self.vertex_order, :]


def insta_topology(path: Path | str, n_flame_vertices: int) -> Topology:
    """INSTA's simplified topology from its ``scripts/topology`` folder, or from a folder holding
    INSTA-pytorch's ``canonical.obj`` (``insta/mesh_masks``), or that obj itself.

    Raises:
        BadInputError: files missing or not matching FLAME's vertex count.
    """
    path = Path(path)
    if path.is_dir() and not (path / TOPOLOGY_FILES[0]).is_file():
        path = path / "canonical.obj"
    if path.is_file():
        verts, faces = read_obj(path)
        if len(verts) != n_flame_vertices:
            raise BadInputError(f"{path}: {len(verts)} vertices, FLAME has {n_flame_vertices}")
        return Topology(np.arange(n_flame_vertices), faces)
    missing = [n for n in TOPOLOGY_FILES if not (path / n).is_file()]
    if missing:
        raise BadInputError(
            f"INSTA topology folder {path} lacks {', '.join(missing)} (or canonical.obj)"
        )
    head_idxs = np.load(path / "head_idxs.npy").astype(np.int64)
    remove = np.load(path / "flame_vertices_mask.npy").astype(bool)
    template_faces = np.load(path / "template_face_sparse.npy").astype(np.int64)
    if len(head_idxs) != n_flame_vertices:
        raise BadInputError(f"{path}/head_idxs.npy maps {len(head_idxs)} vertices, not FLAME's")
    kept = np.flatnonzero(~remove)  # open3d keeps the unflagged vertices in their order
    flame_of_template = np.full(len(remove), -1)
    flame_of_template[head_idxs] = np.arange(len(head_idxs))
    if np.any(flame_of_template[kept] < 0):
        raise BadInputError(f"{path}: kept template vertices that are not FLAME vertices")
    rank = np.full(len(remove), -1)
    rank[kept] = np.arange(len(kept))
    faces = rank[template_faces[(~remove)[template_faces].all(1)]]
    return Topology(flame_of_template[kept], faces)


class FlameVertices:
    """FLAME vertices of tracked frames (float64), through the project's FLAME layer.

    Args:
        model: a `prep.models.flame.FlameModel` built with the tracking's coefficient counts.
        track: the tracking whose parameters are evaluated.
    """

    def __init__(self, model, track: Tracking):
        self.model = model
        self.track = track
        self.faces = model.faces.numpy()

    def _eval(self, params: dict) -> np.ndarray:
        import torch

        with torch.no_grad():
            return evaluate(self.model, params).vertices.double().numpy()

    def frames(self, idx: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """(n,V,3) posed vertices of frames `idx`, moved by `transl` (n,3) instead of theirs."""
        p = {k: v if k == "shape" else v[idx] for k, v in self.track.params().items()}
        return self._eval({**p, "transl": transl})

    def canonical(self, jaw_rad: float = METRICAL_CANONICAL_JAW) -> np.ndarray:
        """(V,3) the tracked identity, zero expression, mouth opened by `jaw_rad` about x."""
        p = rest_params(self.track.shape, self.track.expr.shape[1])
        return self._eval({**p, "jaw_pose": np.array([[jaw_rad, 0.0, 0.0]])})[0]
