"""Reading untrusted model files without running their code: one loader for every pickle.

Model files we may not ship (FLAME pickles, DECA landmark embeddings, AD-NeRF's ``*_info.npy``,
network checkpoints) come from wherever the user downloaded them. A pickle can name any global
and call it while loading (``posix.system``, ``builtins.eval``), so nothing here uses
``pickle.load``, ``np.load(allow_pickle=True)`` or ``torch.load(weights_only=False)``:

- `load_pickle` / `load_object_npy` unpickle with `RestrictedUnpickler`, which admits only the
  globals a file of the declared kind really contains (`KINDS`) and refuses every other one with
  `UnsafePickleError` before it is imported or called;
- `load_checkpoint` reads torch checkpoints with ``torch.load(weights_only=True)`` (torch's own
  allow-list of tensors and containers) and turns every failure into one `MissingAssetError`
  whose status says ``corrupt`` or ``refused``.

What the files contain (read with ``pickletools``, which executes nothing): AD-NeRF's
``keys_info.npy`` and ``topology_info.npy`` (YudongGuo/AD-NeRF,
data_util/face_tracking/3DMM/) name only ``numpy.core.multiarray._reconstruct``,
``numpy.ndarray`` and ``numpy.dtype``; its ``3DMM_info.npy`` is written by
data_util/face_tracking/convert_BFM.py (``np.save`` of a dict of numpy arrays). FLAME2020's
``generic_model.pkl`` adds chumpy ``Ch`` objects and a scipy ``csc_matrix`` (protocol 2, via
``copy_reg._reconstructor``); DECA's ``landmark_embedding.npy`` holds torch tensors
(``torch._utils._rebuild_tensor_v2`` over storages saved with ``torch.save``).
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from prep.errors import BadInputError, MissingAssetError


class UnsafePickleError(BadInputError):
    """A pickle names a global outside the allow-list (it could run arbitrary code)."""


class ChStandIn:
    """Stand-in for ``chumpy.ch.Ch`` (and its subclasses): keeps the pickled state only."""

    state: dict = {}  # noqa: RUF012  (replaced per instance by __setstate__)

    def __init__(self, *args: Any, **kwargs: Any):
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}


class SparseStandIn:
    """Stand-in for scipy sparse matrices: keeps the pickled state (data, indices, indptr)."""

    state: dict = {}  # noqa: RUF012
    fmt = "csc"

    def __init__(self, *args: Any, **kwargs: Any):
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


_SPARSE_STAND_INS = {
    fmt: type(f"{fmt}_matrix", (SparseStandIn,), {"fmt": fmt}) for fmt in ("csc", "csr")
}


def _load_storage_bytes(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _torch_rebuild(name: str):
    import torch._utils

    return getattr(torch._utils, name)


# Globals per file kind: (module, name) -> (module, name) actually imported.
_NUMPY = {
    (m, n): ("numpy.core.multiarray", n)
    for m in ("numpy.core.multiarray", "numpy._core.multiarray")
    for n in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # array bytes in protocol-2 pickles from py3
}
_PY2_CONTAINERS = {
    ("copy_reg", "_reconstructor"): ("copyreg", "_reconstructor"),
    ("copyreg", "_reconstructor"): ("copyreg", "_reconstructor"),
    ("__builtin__", "object"): ("builtins", "object"),
    ("builtins", "object"): ("builtins", "object"),
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
}
_SPARSE_MODULES = {"scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"}
_TORCH_REBUILD = {"_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"}

KINDS = ("numpy", "flame", "torch")
"""File kinds: numpy = arrays in dicts/lists (AD-NeRF, FLAME_masks.pkl); flame = numpy plus
chumpy and scipy-sparse stand-ins and protocol-2 containers; torch = numpy plus torch tensors."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting only the globals of the declared file kinds.

    Args:
        file: binary file object positioned at the pickle.
        kinds: subset of `KINDS`.
    """

    def __init__(self, file, kinds: tuple[str, ...] = ("numpy",)):
        super().__init__(file, encoding="latin1")
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown pickle kinds {sorted(unknown)}; known: {KINDS}")
        self.kinds = frozenset(kinds)

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed(module, name)
        if found is None:
            raise UnsafePickleError(f"refusing to unpickle global {module}.{name}")
        return found

    def _allowed(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY:
            return super().find_class(*_NUMPY[(module, name)])
        if "flame" in self.kinds:
            if (module, name) in _PY2_CONTAINERS:
                return super().find_class(*_PY2_CONTAINERS[(module, name)])
            if module.split(".")[0] == "chumpy":
                return ChStandIn
            if module in _SPARSE_MODULES and name in ("csc_matrix", "csr_matrix"):
                return _SPARSE_STAND_INS[name[:3]]
        if "torch" in self.kinds:
            if module == "torch._utils" and name in _TORCH_REBUILD:
                return _torch_rebuild(name)
            if module == "torch.storage" and name == "_load_from_bytes":
                return _load_storage_bytes
            if module == "torch" and name.endswith("Storage"):
                return super().find_class(module, name)
            if module == "collections" and name == "OrderedDict":
                return super().find_class(module, name)
        return None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids")


def load_pickle(
    data: bytes | io.BufferedIOBase, source: Path | str = "<bytes>", kinds: tuple[str, ...] = ()
) -> Any:
    """Unpickle untrusted bytes (or a file object) admitting only the globals of `kinds`.

    Args:
        data: the pickle's bytes or a binary file object positioned at it.
        source: file name for messages.
        kinds: file kinds (see `KINDS`); numpy arrays are always admitted.

    Raises:
        UnsafePickleError: the pickle names a global outside the allow-list (nothing ran).
        BadInputError: the bytes are not a readable pickle.
    """
    fh = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        return RestrictedUnpickler(fh, ("numpy", *kinds)).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{source}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise BadInputError(f"{source}: not a readable pickle ({e})") from None
    except (IndexError, KeyError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise BadInputError(f"{source}: corrupt pickle ({type(e).__name__})") from None


def load_object_npy(path: Path | str, kinds: tuple[str, ...] = ()) -> Any:
    """Read a ``.npy`` file; an object array is unpickled with `RestrictedUnpickler`.

    A 0-d object array (``np.save`` of a dict) gives the dict itself; a plain numeric array is
    read with ``allow_pickle=False``.

    Raises:
        UnsafePickleError: the embedded pickle names a global outside the allow-list.
        BadInputError: not an .npy file, or a corrupt one.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            # numpy's private reader: the public read_array_header_1_0/_2_0 miss version 3.0
            shape, _, dtype = np.lib.format._read_array_header(fh, version)  # type: ignore[attr-defined]
        except (ValueError, EOFError) as e:
            raise BadInputError(f"{path}: not an .npy file ({e})") from None
        if dtype != np.dtype(object):
            fh.seek(0)
            try:
                return np.load(fh, allow_pickle=False)
            except (ValueError, EOFError) as e:
                raise BadInputError(f"{path}: corrupt .npy file ({e})") from None
        obj = load_pickle(fh, path, kinds)
    if isinstance(obj, np.ndarray) and obj.shape == () and shape == ():
        return obj[()]
    return obj


def load_checkpoint(path: Path | str, asset: str, url: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure is one clear error.

    Args:
        path: the checkpoint file.
        asset: registry name (see `prep.assets`), for the message and its config key.
        url: where to obtain the file.

    Raises:
        MissingAssetError: status ``missing`` (absent), ``refused`` (the pickle names a global
            outside torch's weights-only allow-list: it could run code) or ``corrupt``.
    """
    import torch

    path, key = Path(path), f"assets.{asset}"
    if not path.is_file():
        raise MissingAssetError(asset, path, url, key)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt files
        text = str(e)
        glob = re.search(r"GLOBAL (\S+)", text)
        if "Weights only load failed" in text and glob:
            name = glob.group(1) if "." in glob.group(1) else f"builtins.{glob.group(1)}"
            reason = f"refused (the checkpoint names {name}, which could run code)"
            raise MissingAssetError(asset, path, url, key, reason, status="refused") from None
        if "Weights only load failed" in text:
            first = "not a torch checkpoint"
        else:
            first = text.splitlines()[0].split(". ")[0][:100] if text else ""
            first = f"{type(e).__name__}: {first}" if first else type(e).__name__
        reason = f"unreadable checkpoint ({first})"
        raise MissingAssetError(asset, path, url, key, reason, status="corrupt") from None


def refused_reason(e: UnsafePickleError) -> str:
    """The message part of a refusal, for an asset error's reason."""
    text = str(e)
    glob = text.rsplit("global ", 1)[-1] if "global " in text else "something outside numpy"
    return f"refused (the pickle names {glob}, which could run code)"
