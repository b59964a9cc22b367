"""Readers (and the one builder) of the Basel Face Model files our users have.

Three layouts are read into one `BfmData` (flat bases ``(3N, n)``, xyz interleaved per vertex,
coordinates in BFM units / 1e5 with the mean shape re-centred at its centroid, colours 0-255,
every index 0-based):

- ``front``: Deep3DFaceRecon's ``BFM_model_front.mat`` (N = 35709; id 80, exp 64, tex 80;
  coefficients are unit-variance because the bases are PCs times standard deviations).
- ``adnerf``: AD-NeRF's ``3DMM_info.npy`` (id 100, exp 79, tex 100; bases scaled by their sigmas on
  load so coefficients are unit-variance too) with ``keys_info.npy`` and ``topology_info.npy``
  beside it. These are pickles: they are read by the restricted loader (`prep.io.safe_load`),
  which admits numpy arrays only, never by ``np.load(allow_pickle=True)``.
- ``BFM_model_front.mat`` built from ``01_MorphableModel.mat`` + ``Exp_Pca.bin`` plus the index
  files Deep3DFaceRecon ships in its ``BFM/`` folder (`build_front_model`), as that project does.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from prep.errors import BadInputError, MissingAssetError
from prep.io.files import atomic_path
from prep.io.safe_load import UnsafePickleError, load_object_npy, refused_reason

log = logging.getLogger(__name__)

FRONT_KEYS = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "keypoints")
ADNERF_KEYS = (
    "mu_shape",
    "b_shape",
    "mu_exp",
    "b_exp",
    "mu_tex",
    "b_tex",
    "sig_shape",
    "sig_exp",
    "sig_tex",
)
# Files Deep3DFaceRecon's BFM/ folder holds beside 01_MorphableModel.mat (git-tracked there).
BUILD_FILES = ("BFM_front_idx.mat", "BFM_exp_idx.mat", "facemodel_info.mat", "std_exp.txt")
ADNERF_DIMS = (100, 79, 100)


@dataclass
class BfmData:
    """A loaded BFM variant (numpy, float32).

    Attributes:
        variant: "front" or "adnerf".
        mean_shape: (N, 3) mean face, re-centred, BFM units / 1e5 (a face is ~1.5 wide).
        id_base: (3N, n_id) identity basis per unit coefficient.
        exp_base: (3N, n_exp) expression basis per unit coefficient.
        mean_tex: (N, 3) mean albedo, 0-255.
        tex_base: (3N, n_tex) texture basis per unit coefficient, 0-255.
        tri: (F, 3) int64 triangles, 0-based.
        keypoints: (68,) int64 vertex ids of the iBUG-68 landmarks, 0-based.
        skin_mask: (N,) bool region used by the photometric terms (all True when unknown).
    """

    variant: str
    mean_shape: np.ndarray
    id_base: np.ndarray
    exp_base: np.ndarray
    mean_tex: np.ndarray
    tex_base: np.ndarray
    tri: np.ndarray
    keypoints: np.ndarray
    skin_mask: np.ndarray

    @property
    def n_vertices(self) -> int:
        return int(self.mean_shape.shape[0])


def _bad(asset: str, path: Path, why: str) -> MissingAssetError:
    return MissingAssetError(asset, path, config_key=f"assets.{asset}", reason=why)


def _recentre(mean_flat: np.ndarray) -> np.ndarray:
    mean = np.asarray(mean_flat, np.float64).reshape(-1, 3)
    return (mean - mean.mean(axis=0, keepdims=True)).astype(np.float32)


def load_front_mat(path: Path | str) -> BfmData:
    """Read Deep3DFaceRecon's ``BFM_model_front.mat``.

    Raises:
        MissingAssetError: the file is unreadable or lacks a required key.
    """
    path = Path(path)
    try:
        m = scipy.io.loadmat(str(path))
    except (OSError, ValueError) as e:
        raise _bad("bfm_front", path, f"unreadable .mat ({e})") from None
    missing = [k for k in FRONT_KEYS if k not in m]
    if missing:
        raise _bad("bfm_front", path, f"not a BFM_model_front.mat (missing {', '.join(missing)})")
    n = m["meanshape"].size // 3
    skin = np.ones(n, bool)
    if "skinmask" in m:
        skin = np.asarray(m["skinmask"]).reshape(-1).astype(bool)
    return BfmData(
        variant="front",
        mean_shape=_recentre(m["meanshape"]),
        id_base=np.asarray(m["idBase"], np.float32),
        exp_base=np.asarray(m["exBase"], np.float32),
        mean_tex=np.asarray(m["meantex"], np.float32).reshape(-1, 3),
        tex_base=np.asarray(m["texBase"], np.float32),
        tri=np.asarray(m["tri"], np.int64) - 1,
        keypoints=np.asarray(m["keypoints"], np.int64).reshape(-1) - 1,
        skin_mask=skin,
    )


def _load_pickled_dict(path: Path, asset: str) -> dict:
    """A dict saved with ``np.save``, read by the restricted loader (numpy arrays only)."""
    if not path.is_file():
        raise _bad(asset, path, "not found (AD-NeRF keeps it beside 3DMM_info.npy)")
    try:
        obj = load_object_npy(path)
    except UnsafePickleError as e:
        raise MissingAssetError(
            asset, path, config_key=f"assets.{asset}", reason=refused_reason(e), status="refused"
        ) from None
    except BadInputError as e:
        raise _bad(asset, path, str(e).removeprefix(f"{path}: ")) from None
    if not isinstance(obj, dict):
        raise _bad(asset, path, f"expected a dict saved with np.save, got {type(obj).__name__}")
    return obj


def load_adnerf(path: Path | str, dims: tuple[int, int, int] = ADNERF_DIMS) -> BfmData:
    """Read AD-NeRF's ``3DMM_info.npy`` (+ ``keys_info.npy``, ``topology_info.npy`` beside it).

    Args:
        path: the 3DMM_info.npy file.
        dims: (n_id, n_exp, n_tex) kept, AD-NeRF uses (100, 79, 100).
    """
    path = Path(path)
    info = _load_pickled_dict(path, "bfm_adnerf")
    missing = [k for k in ADNERF_KEYS if k not in info]
    if missing:
        raise _bad("bfm_adnerf", path, f"not a 3DMM_info.npy (missing {', '.join(missing)})")
    keys = _load_pickled_dict(path.parent / "keys_info.npy", "bfm_adnerf")
    n_id, n_exp, n_tex = dims
    sig = {k: np.asarray(info[f"sig_{k}"], np.float64).reshape(-1) for k in ("shape", "exp", "tex")}
    # AD-NeRF stores bases as (n, 3N) and multiplies coefficients by sigma: fold sigma in.
    id_base = np.asarray(info["b_shape"][:n_id], np.float64).T * sig["shape"][:n_id] / 1e5
    exp_base = np.asarray(info["b_exp"][:n_exp], np.float64).T * sig["exp"][:n_exp] / 1e5
    tex_base = np.asarray(info["b_tex"][:n_tex], np.float64).T * sig["tex"][:n_tex]
    mean = (np.asarray(info["mu_shape"], np.float64) + np.asarray(info["mu_exp"], np.float64)) / 1e5
    n = mean.size // 3
    tri = np.zeros((0, 3), np.int64)
    topo_path = path.parent / "topology_info.npy"
    if topo_path.is_file():
        tri = np.asarray(_load_pickled_dict(topo_path, "bfm_adnerf")["tris"], np.int64)
    else:
        log.warning("%s missing: no triangles, the photometric phase is disabled", topo_path)
    return BfmData(
        variant="adnerf",
        mean_shape=_recentre(mean),
        id_base=id_base.astype(np.float32),
        exp_base=exp_base.astype(np.float32),
        mean_tex=np.asarray(info["mu_tex"], np.float32).reshape(-1, 3),
        tex_base=tex_base.astype(np.float32),
        tri=tri,
        keypoints=np.asarray(keys["keyinds"], np.int64).reshape(-1),
        skin_mask=np.ones(n, bool),
    )


def read_exp_pca_bin(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``Exp_Pca.bin``: int32 dim, float32 mean (3V), float32 PCs (dim, 3V).

    Returns:
        (exp_mean (3V,), exp_pc (3V, dim)), float32; V is derived from the file size.
    """
    path = Path(path)
    raw = path.read_bytes()
    dim = int(np.frombuffer(raw[:4], np.int32)[0])
    n_float = (len(raw) - 4) // 4
    if dim <= 0 or n_float % (dim + 1) or (n_float // (dim + 1)) % 3:
        raise _bad("bfm_exp_pca", path, f"size {len(raw)} does not fit Exp_Pca.bin with dim {dim}")
    values = array("f")
    values.frombytes(raw[4 : 4 + 4 * n_float])
    flat = np.asarray(values, np.float32)
    n3 = n_float // (dim + 1)
    return flat[:n3], flat[n3:].reshape(dim, n3).T.copy()


def build_front_model(bfm2009_path: Path | str, exp_pca_path: Path | str) -> dict:
    """Build the content of ``BFM_model_front.mat`` as Deep3DFaceRecon's transferBFM09 does.

    Needs ``01_MorphableModel.mat``, ``Exp_Pca.bin`` and, beside the former, the index files
    `BUILD_FILES` from Deep3DFaceRecon's ``BFM/`` folder. Keeps id 80, exp 64, tex 80.

    Returns:
        dict of arrays ready for ``scipy.io.savemat`` (1-based indices, like the original).
    """
    bfm_path, folder = Path(bfm2009_path), Path(bfm2009_path).parent
    for name in BUILD_FILES:
        if not (folder / name).is_file():
            raise _bad(
                "bfm_2009",
                folder / name,
                "not found (copy Deep3DFaceRecon_pytorch/BFM/ files beside it)",
            )
    try:
        orig = scipy.io.loadmat(str(bfm_path))
    except (OSError, ValueError) as e:
        raise _bad("bfm_2009", bfm_path, f"unreadable .mat ({e})") from None
    _, exp_pc = read_exp_pca_bin(exp_pca_path)
    exp_ev = np.loadtxt(folder / "std_exp.txt").reshape(-1)
    idx_exp = (
        scipy.io.loadmat(str(folder / "BFM_front_idx.mat"))["idx"].astype(np.int64).ravel() - 1
    )
    trim = scipy.io.loadmat(str(folder / "BFM_exp_idx.mat"))["trimIndex"]
    idx_shape = trim.astype(np.int64).ravel()[idx_exp] - 1

    def per_vertex(flat: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
        return flat.reshape(-1, 3, n)[index].reshape(-1, n)

    id_base = orig["shapePC"] * orig["shapeEV"].reshape(1, -1) / 1e5
    tex_base = orig["texPC"] * orig["texEV"].reshape(1, -1)
    exp_base = exp_pc * exp_ev[: exp_pc.shape[1]].reshape(1, -1) / 1e5
    info = scipy.io.loadmat(str(folder / "facemodel_info.mat"))
    out = {
        "meanshape": (orig["shapeMU"].reshape(-1, 3)[idx_shape] / 1e5).reshape(1, -1),
        "meantex": orig["texMU"].reshape(-1, 3)[idx_shape].reshape(1, -1),
        "idBase": per_vertex(id_base[:, :80], idx_shape, min(80, id_base.shape[1])),
        "texBase": per_vertex(tex_base[:, :80], idx_shape, min(80, tex_base.shape[1])),
        "exBase": per_vertex(exp_base[:, :64], idx_exp, min(64, exp_base.shape[1])),
    }
    for key in ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask"):
        if key in info:
            out[key] = info[key]
    return {k: np.asarray(v, np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}


def write_front_mat(path: Path | str, content: dict) -> None:
    """Save a built front model atomically."""
    with atomic_path(path) as tmp:
        scipy.io.savemat(str(tmp), content, do_compression=False)


def load_bfm(variant: str, front_path: Path, adnerf_path: Path | None = None) -> BfmData:
    """Load the configured variant ("front" or "adnerf")."""
    if variant == "front":
        return load_front_mat(front_path)
    if variant == "adnerf":
        if adnerf_path is None:
            raise ValueError("adnerf variant needs the 3DMM_info.npy path")
        return load_adnerf(adnerf_path)
    raise ValueError(f"unknown BFM variant {variant!r}; use front or adnerf")
