"""Atomic file helpers: every write goes to a temp file in the same folder, then `os.replace`.

A killed run therefore never leaves a half-written file under a final name; leftover temp files
carry the `.tmp-` prefix and are ignored (and cleaned) by readers and resumers.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

TMP_PREFIX = ".tmp-"


def _process_umask() -> int:
    """The umask, read once (os.umask can only be read by setting it, which races threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; outputs get the usual permissions (0666 minus the umask).
_FILE_MODE = 0o666 & ~_process_umask()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`, else delete it.

    The temp name keeps the suffix so writers that dispatch on it (cv2, numpy) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        if e.filename is None or str(e.filename) == str(tmp_path):
            # A failed write (full disk) names no file: name the output the user will look for.
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path | str, obj: Any, indent: int | None = 1) -> None:
    """Write `obj` as strict JSON atomically (numpy scalars and arrays are converted).

    A number that is not finite (NaN: a metric the input cannot define; infinity) is written as
    null: Python's NaN / Infinity tokens are not JSON, and browsers' JSON.parse, jq and most
    other readers refuse the whole file. `nan_for_null` turns them back into NaN where a reader
    expects numbers.
    """
    text = json_text(obj, indent)
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any, indent: int | None = 1) -> str:
    """`obj` as strict JSON text: numbers that are not finite become null (see `write_json`)."""
    try:  # the usual case, at json's C speed: every number finite
        return json.dumps(obj, indent=indent, default=_json_default, allow_nan=False)
    except ValueError:
        return json.dumps(_finite_or_null(obj), indent=indent, default=_json_default)


def _finite_or_null(o: Any) -> Any:
    """`o` with every non-finite float (numpy's included) replaced by None."""
    if isinstance(o, float):  # np.float64 is a float too
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite_or_null(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite_or_null(v) for v in o]
    if isinstance(o, np.ndarray | np.generic):
        return _finite_or_null(o.tolist())
    return o


def nan_for_null(numbers: dict[str, Any] | None) -> dict[str, Any]:
    """A dict of numbers read back from JSON, with null (a NaN when written) as NaN again."""
    return {k: math.nan if v is None else v for k, v in (numbers or {}).items()}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path | str) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_npz(path: Path | str, **arrays: Any) -> None:
    """Save arrays to an uncompressed .npz atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Load every array of an .npz into a dict (the file is closed on return)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def encode_image(img: np.ndarray, suffix: str, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB/RGBA/gray uint8 image to PNG or JPEG bytes.

    Args:
        img: (H,W), (H,W,3) RGB or (H,W,4) RGBA, uint8 (or uint16 for PNG depth maps).
        suffix: ".png", ".jpg" or ".jpeg".
        jpeg_quality: JPEG quality 1-100.
    """
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, img, params)
    if not ok:
        raise ValueError(f"could not encode image of shape {img.shape} as {suffix}")
    return buf.tobytes()


def write_image(path: Path | str, img: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB/RGBA/gray image atomically; format from the suffix."""
    path = Path(path)
    write_bytes(path, encode_image(img, path.suffix.lower(), jpeg_quality))


def image_hw(img: np.ndarray) -> tuple[int, int]:
    """``(H, W)`` of an (H, W, ...) image, typed as the pair it is (``shape[:2]`` is a tuple)."""
    return int(img.shape[0]), int(img.shape[1])


def read_image(path: Path | str, mode: str = "rgb") -> np.ndarray:
    """Read an image as uint8 in RGB order.

    Args:
        path: image file.
        mode: "rgb" (H,W,3), "rgba" (H,W,4; opaque alpha added when absent), "gray" (H,W),
            or "unchanged" (as stored, channels converted to RGB order).
    """
    flags = {"gray": cv2.IMREAD_GRAYSCALE, "rgb": cv2.IMREAD_COLOR}.get(mode, cv2.IMREAD_UNCHANGED)
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if mode == "gray":
        return img
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if mode == "rgba":
            img = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, img.dtype)], axis=2)
        return img
    img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img[..., :3].copy() if mode == "rgb" else img


def clean_temp_files(folder: Path | str) -> int:
    """Delete leftover temp files of killed runs in `folder`; returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.glob(TMP_PREFIX + "*"):
        p.unlink(missing_ok=True)
        n += 1
    return n
