"""Loading FLAME model files and landmark embeddings without chumpy, safely.

FLAME pickles (``generic_model.pkl``, ``flame2023.pkl``) and DECA's landmark embeddings are
untrusted input, so they are read with the project's one restricted loader (`prep.io.safe_load`):
only the numpy, scipy-sparse, chumpy and torch-tensor globals these files contain are admitted,
and chumpy/scipy classes are replaced by inert stand-ins that only hold their pickled state. A
pickle naming any other global is refused with `UnsafePickleError`. Torch storages embedded in the
embeddings load with ``torch.load(..., weights_only=True)``.

A loaded model is cached as a plain ``<file>.npz`` beside the pickle (when the folder is
writable), keyed by the pickle's size and modification time.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from prep.errors import BadInputError
from prep.io.safe_load import (
    ChStandIn,
    SparseStandIn,
    UnsafePickleError,
    load_object_npy,
    load_pickle,
)

__all__ = ["UnsafePickleError", "load_flame_model", "load_landmark_embedding", "safe_pickle_load"]

log = logging.getLogger(__name__)

N_JOINTS = 5  # global (root), neck, jaw, left eye, right eye
N_POSE_FEATURES = 36  # (N_JOINTS - 1) * 9


def safe_pickle_load(data: bytes | io.BufferedIOBase, source: Path | str = "<bytes>") -> Any:
    """Unpickle an untrusted FLAME pickle or DECA embedding (see `prep.io.safe_load`).

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list.
        BadInputError: the bytes are not a readable pickle.
    """
    return load_pickle(data, source, kinds=("flame", "torch"))


def _densify(value: Any, key: str, source: Path) -> Any:
    """Chumpy/scipy stand-ins -> numpy arrays; other values unchanged."""
    if isinstance(value, ChStandIn):
        for k in ("x", "a", "r"):
            if isinstance(value.state.get(k), np.ndarray):
                return value.state[k]
        raise BadInputError(f"{source}: {key!r} is a derived chumpy object this loader cannot read")
    if isinstance(value, SparseStandIn):
        import scipy.sparse as sp

        st = value.state
        try:
            shape = st["_shape"] if "_shape" in st else st["shape"]
            parts = (st["data"], st["indices"], st["indptr"])
        except KeyError:
            raise BadInputError(f"{source}: {key!r} is an unreadable sparse matrix") from None
        cls = sp.csc_matrix if value.fmt == "csc" else sp.csr_matrix
        return cls(parts, shape=tuple(shape)).toarray()
    return value


@dataclass
class FlameModelData:
    """Arrays of a FLAME model, as numpy (float64 geometry).

    Attributes:
        v_template: (V, 3) template vertices, metres.
        faces: (F, 3) int64 triangle vertex indices.
        shapedirs: (V, 3, S) identity basis (S = 300 in FLAME).
        exprdirs: (V, 3, E) expression basis (E = 100 in FLAME).
        posedirs: (V, 3, 36) pose-corrective basis over (R - I) of the 4 non-root joints.
        J_regressor: (5, V) dense joint regressor.
        weights: (V, 5) skinning weights.
        parents: (5,) int64 parent joint of each joint, -1 for the root.
        eyelids: (V, 3, 2) eyelid blendshapes (left, right), or None when the model has none.
    """

    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    eyelids: np.ndarray | None = None

    @property
    def n_vertices(self) -> int:
        return self.v_template.shape[0]

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


def _check_shape(source: Path, key: str, arr: np.ndarray, expect: tuple) -> None:
    ok = arr.ndim == len(expect) and all(
        e is None or e == s for e, s in zip(expect, arr.shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expect) + ")"
        raise BadInputError(f"FLAME model {source}: {key!r} has shape {arr.shape}, expected {want}")


def flame_data_from_dict(raw: dict, source: Path | str, n_shape_total: int = 300) -> FlameModelData:
    """Validate a FLAME pickle's dict and split shapedirs into identity and expression.

    Args:
        raw: the unpickled dict (chumpy/sparse stand-ins allowed).
        source: file name for messages.
        n_shape_total: identity components at the front of ``shapedirs`` (FLAME: 300).
    """
    source = Path(source)
    if not isinstance(raw, dict):
        raise BadInputError(f"FLAME model {source}: expected a dict, got {type(raw).__name__}")
    need = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
    missing = [k for k in need if k not in raw]
    if missing:
        raise BadInputError(
            f"FLAME model {source}: missing keys {missing}; is this a FLAME pickle?"
        )
    a = {k: np.asarray(_densify(raw[k], k, source)) for k in need}
    V = a["v_template"].shape[0]
    _check_shape(source, "v_template", a["v_template"], (None, 3))
    _check_shape(source, "f", a["f"], (None, 3))
    _check_shape(source, "shapedirs", a["shapedirs"], (V, 3, None))
    _check_shape(source, "posedirs", a["posedirs"], (V, 3, N_POSE_FEATURES))
    _check_shape(source, "J_regressor", a["J_regressor"], (N_JOINTS, V))
    _check_shape(source, "weights", a["weights"], (V, N_JOINTS))
    _check_shape(source, "kintree_table", a["kintree_table"], (2, N_JOINTS))
    n_total = a["shapedirs"].shape[2]
    if n_total <= n_shape_total:
        n_shape_total = n_total
    eyelids = None
    if "l_eyelid" in raw and "r_eyelid" in raw:
        eyelids = np.stack(
            [
                np.asarray(_densify(raw[k], k, source)).reshape(V, 3)
                for k in ("l_eyelid", "r_eyelid")
            ],
            -1,
        )
    elif "eyelids" in raw:
        eyelids = np.asarray(_densify(raw["eyelids"], "eyelids", source))
        _check_shape(source, "eyelids", eyelids, (V, 3, 2))
    parents = a["kintree_table"][0].astype(np.int64)
    parents[0] = -1  # FLAME stores 2**32-1 for the root
    sd = a["shapedirs"].astype(np.float64)
    return FlameModelData(
        v_template=a["v_template"].astype(np.float64),
        faces=a["f"].astype(np.int64),
        shapedirs=sd[:, :, :n_shape_total],
        exprdirs=sd[:, :, n_shape_total:],
        posedirs=a["posedirs"].astype(np.float64),
        J_regressor=a["J_regressor"].astype(np.float64),
        weights=a["weights"].astype(np.float64),
        parents=parents,
        eyelids=None if eyelids is None else eyelids.astype(np.float64),
    )


def _cache_path(path: Path) -> Path:
    return path.with_name(path.name + ".npz")


def load_flame_model(path: Path | str, use_cache: bool = True) -> FlameModelData:
    """Load a FLAME model pickle (FLAME2020 chumpy-pickled or FLAME2023) without chumpy.

    Args:
        path: the ``.pkl`` file (or a cached ``.npz`` written by this function).
        use_cache: read/write ``<path>.npz`` keyed by the pickle's size and mtime.

    Raises:
        UnsafePickleError, BadInputError: the file is unsafe or not a valid FLAME model.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return _from_npz(path, path)
    st = path.stat()
    key = np.array([st.st_size, st.st_mtime_ns], dtype=np.int64)
    cache = _cache_path(path)
    if use_cache and cache.exists():
        try:
            with np.load(cache) as z:
                if np.array_equal(z["source_key"], key):
                    return _from_npz(cache, path)
        except (OSError, KeyError, ValueError):
            log.warning("ignoring unreadable FLAME cache %s", cache)
    raw = load_pickle(path.read_bytes(), path, kinds=("flame",))
    data = flame_data_from_dict(raw, path)
    if use_cache:
        try:
            tmp = cache.with_name(".tmp-" + cache.name)
            with open(tmp, "wb") as f:
                np.savez(f, source_key=key, **data.to_npz_dict())
            tmp.replace(cache)
        except OSError as e:
            log.info("could not cache FLAME model next to %s (%s)", path, e)
    return data


def _from_npz(npz: Path, source: Path) -> FlameModelData:
    with np.load(npz, allow_pickle=False) as z:
        kw = {f.name: z[f.name] for f in fields(FlameModelData) if f.name in z.files}
    try:
        return FlameModelData(**kw)
    except TypeError as e:
        raise BadInputError(f"FLAME cache {npz} (of {source}) is incomplete: {e}") from None


@dataclass
class LandmarkEmbedding:
    """Barycentric landmark embedding on the FLAME mesh (DECA / IMAvatar layout).

    Attributes:
        static_faces: (S,) face index per static point (S = 51, or 53 with two iris centres).
        static_bary: (S, 3) barycentric coordinates.
        dynamic_faces: (79, 17) contour faces per yaw bin (bins 0..39 = yaw 0..39 deg,
            40..78 = yaw -1..-39 deg).
        dynamic_bary: (79, 17, 3).
        full_faces: (N,) static 68-point (or 70) embedding; full_bary (N, 3).
    """

    static_faces: np.ndarray
    static_bary: np.ndarray
    dynamic_faces: np.ndarray
    dynamic_bary: np.ndarray
    full_faces: np.ndarray
    full_bary: np.ndarray

    @property
    def n_points(self) -> int:
        """17 contour + static points: 68, or 70 with iris centres."""
        return 17 + len(self.static_faces)

    @property
    def has_iris(self) -> bool:
        return len(self.static_faces) == 53


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def load_landmark_embedding(path: Path | str) -> LandmarkEmbedding:
    """Read ``landmark_embedding.npy`` / ``landmark_embedding_with_eyes.npy`` (0-d object npy)."""
    path = Path(path)
    d = load_object_npy(path, kinds=("torch",))
    keys = (
        "static_lmk_faces_idx",
        "static_lmk_bary_coords",
        "dynamic_lmk_faces_idx",
        "dynamic_lmk_bary_coords",
        "full_lmk_faces_idx",
        "full_lmk_bary_coords",
    )
    if not isinstance(d, dict) or any(k not in d for k in keys):
        raise BadInputError(f"landmark embedding {path}: expected keys {list(keys)}")
    a = [_as_numpy(d[k]) for k in keys]
    emb = LandmarkEmbedding(
        static_faces=a[0].astype(np.int64).reshape(-1),
        static_bary=a[1].astype(np.float64).reshape(-1, 3),
        dynamic_faces=a[2].astype(np.int64),
        dynamic_bary=a[3].astype(np.float64),
        full_faces=a[4].astype(np.int64).reshape(-1),
        full_bary=a[5].astype(np.float64).reshape(-1, 3),
    )
    S = len(emb.static_faces)
    if (
        S not in (51, 53)
        or emb.dynamic_faces.shape != (79, 17)
        or emb.dynamic_bary.shape != (79, 17, 3)
    ):
        raise BadInputError(
            f"landmark embedding {path}: {S} static points and dynamic {emb.dynamic_faces.shape}; "
            "expected 51 or 53 static and (79, 17)"
        )
    return emb


@dataclass
class MediapipeEmbedding:
    """FLAME points matched to MediaPipe's 478 (metrical-tracker layout).

    Attributes:
        faces: (M,) face index; bary: (M, 3); mp_index: (M,) index into MediaPipe's 478 points.
    """

    faces: np.ndarray
    bary: np.ndarray
    mp_index: np.ndarray


def load_mediapipe_embedding(path: Path | str) -> MediapipeEmbedding:
    """Read ``mediapipe_landmark_embedding.npz`` (no pickles allowed)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            emb = MediapipeEmbedding(
                faces=z["lmk_face_idx"].astype(np.int64),
                bary=z["lmk_b_coords"].astype(np.float64),
                mp_index=z["landmark_indices"].astype(np.int64),
            )
    except (KeyError, ValueError, OSError) as e:
        raise BadInputError(f"mediapipe embedding {path}: unreadable ({e})") from None
    M = len(emb.faces)
    if emb.bary.shape != (M, 3) or emb.mp_index.shape != (M,) or emb.mp_index.max() >= 478:
        raise BadInputError(f"mediapipe embedding {path}: inconsistent shapes")
    return emb
