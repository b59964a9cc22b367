"""PIRenderer / OTAvatar LMDB: writer and reader.

Layout (as PIRenderer's prepare_vox_lmdb writes and its VoxDataset reads)::

    <out>/<size>/data.mdb, lock.mdb
    <out>/train_list.txt, test_list.txt     one video name per line

Keys are UTF-8, parts joined by '-', integers zero-padded to 7 digits (`lmdb_key`):
``length`` (number of videos) and ``<video>-length`` (frames) hold the count as 7-digit text, as
both prepare scripts write it with ``format_for_lmdb(n)`` (readers parse it with ``int()``),
``<video>-0000000``... (JPEG bytes at size x size), ``<video>-keypoint`` float32 (N, 68, 2) in
pixels of the stored frames, ``<video>-coeff_3dmm`` float32 (N, 260) = 257 Deep3DFaceRecon
coefficients + crop [ratio, t0, t1] in pixels of the stored frames (`crop_params_at_size`),
``<video>-condition`` float32 (N, 7) = [-euler, trans, focal] and ``<video>-id`` float32
(1, n_id). Arrays are raw little-endian float32 bytes, no header.

Writing is all-or-nothing: the database is built in a temp folder beside the target, one
transaction per video, and renamed into place only when complete; a too-small map (a full disk)
raises `BadInputError` and leaves nothing behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import lmdb
import numpy as np

from prep.errors import BadInputError
from prep.io.files import TMP_PREFIX, write_bytes

log = logging.getLogger(__name__)

ARRAY_KEYS: dict[str, tuple[int, ...] | None] = {
    "keypoint": (68, 2),
    "coeff_3dmm": (260,),
    "condition": (7,),
    "id": None,
}


def lmdb_key(*parts: str | int) -> bytes:
    """PIRenderer's key format: ints zero-padded to 7 digits, parts joined by '-'."""
    return "-".join(str(p).zfill(7) if isinstance(p, int) else str(p) for p in parts).encode()


def crop_params_at_size(trans_params: np.ndarray, size: int) -> np.ndarray:
    """Deep3DFaceRecon's alignment ``[w0, h0, s, t0, t1]`` of N x N frames -> [s, t0, t1] for the
    same frames resized to ``size``.

    Both prepare scripts store the crop parameters Deep3DFaceRecon computed on the very frames
    they pack (PIRender vox at 256, OTAvatar HDTF at 512). Resizing by r = size / N maps a pixel
    centre x to (x + 0.5) r - 0.5 (also in Deep3DFaceRecon's y-up rows), POS is linear in the
    points, so t scales the same way and the scale factor s = 102 / pos_scale divides by r.

    Args:
        trans_params: (T, 5) float, frames of w0 x h0 pixels (square).
        size: side of the stored frames.

    Returns:
        (T, 3) float32 ``[s, t0, t1]``.
    """
    tp = np.asarray(trans_params, np.float64)
    r = size / tp[:, 0]
    out = np.stack([tp[:, 2] / r, (tp[:, 3] + 0.5) * r - 0.5, (tp[:, 4] + 0.5) * r - 0.5], 1)
    return out.astype(np.float32)


@dataclass
class LmdbVideo:
    """One video to pack.

    Attributes:
        name: key prefix (no '-' at the end; PIRenderer splits person ids on '#').
        frames: iterable of (H, W, 3) RGB uint8 frames (resized to the LMDB size) or JPEG bytes.
        keypoint: (N, 68, 2) landmarks in pixels of the stored (resized) frames.
        coeff_3dmm: (N, 260) coefficients + crop parameters.
        condition: optional (N, 7) [-euler(3), trans(3), focal].
        id: optional (1, n_id) identity coefficients of the video.
    """

    name: str
    frames: Iterable[np.ndarray | bytes]
    keypoint: np.ndarray
    coeff_3dmm: np.ndarray
    condition: np.ndarray | None = None
    id: np.ndarray | None = None


def _jpeg(frame: np.ndarray | bytes, size: int, quality: int) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if frame.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if frame.shape[0] > size else cv2.INTER_CUBIC
        frame = cv2.resize(frame, (size, size), interpolation=interp)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise BadInputError(f"could not JPEG-encode a frame of shape {frame.shape}")
    return buf.tobytes()


def _check_video(v: LmdbVideo) -> int:
    n = len(v.coeff_3dmm)
    if not v.name or any(c in v.name for c in "\n\r"):
        raise BadInputError(f"bad LMDB video name {v.name!r}")
    if v.keypoint.shape != (n, 68, 2) or v.coeff_3dmm.shape != (n, 260):
        raise BadInputError(
            f"{v.name}: keypoint {v.keypoint.shape} / coeff_3dmm "
            f"{v.coeff_3dmm.shape} do not match (N,68,2) / (N,260)"
        )
    if v.condition is not None and v.condition.shape != (n, 7):
        raise BadInputError(f"{v.name}: condition {v.condition.shape} is not ({n}, 7)")
    return n


def _put_video(env: lmdb.Environment, v: LmdbVideo, size: int, quality: int) -> int:
    n = _check_video(v)
    with env.begin(write=True) as txn:
        count = 0
        for i, frame in enumerate(v.frames):
            txn.put(lmdb_key(v.name, i), _jpeg(frame, size, quality))
            count += 1
        if count != n:
            raise BadInputError(f"{v.name}: {count} frames but {n} coefficient rows")
        txn.put(lmdb_key(v.name, "length"), lmdb_key(n))
        txn.put(lmdb_key(v.name, "keypoint"), np.ascontiguousarray(v.keypoint, "<f4").tobytes())
        txn.put(lmdb_key(v.name, "coeff_3dmm"), np.ascontiguousarray(v.coeff_3dmm, "<f4").tobytes())
        if v.condition is not None:
            txn.put(
                lmdb_key(v.name, "condition"), np.ascontiguousarray(v.condition, "<f4").tobytes()
            )
        if v.id is not None:
            txn.put(
                lmdb_key(v.name, "id"), np.ascontiguousarray(v.id, "<f4").reshape(1, -1).tobytes()
            )
    return n


def write_lmdb(
    out_dir: Path | str,
    videos: Iterable[LmdbVideo],
    size: int = 256,
    splits: dict[str, list[str]] | None = None,
    force: bool = False,
    map_size: int = 8 << 30,
    jpeg_quality: int = 95,
) -> Path:
    """Write an LMDB of `videos` at ``<out_dir>/<size>`` plus the split lists.

    Args:
        out_dir: folder receiving ``<size>/`` and ``train_list.txt``/``test_list.txt``.
        videos: videos to pack (frames streamed, one transaction each).
        size: frame side in pixels (PIRenderer 256, OTAvatar 512).
        splits: {"train": [...], "test": [...]} video names; default: every video in both
            (PIRender trains from train_list.txt and runs inference from test_list.txt).
        force: replace an existing database; otherwise an existing one is an error.
        map_size: LMDB map size in bytes (too small -> BadInputError, nothing left behind).
        jpeg_quality: 1-100.

    Returns:
        The database folder ``<out_dir>/<size>``.
    """
    out_dir = Path(out_dir)
    target = out_dir / str(size)
    if target.exists() and not force:
        raise BadInputError(f"LMDB {target} already exists; pass force=true to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{size}-", dir=out_dir))
    tmp.chmod(0o755)  # mkdtemp makes it private; the database is meant to be shared
    names: list[str] = []
    try:
        env = lmdb.open(str(tmp), map_size=int(map_size), subdir=True, lock=True)
        try:
            for v in videos:
                n = _put_video(env, v, size, jpeg_quality)
                names.append(v.name)
                log.info("lmdb: %s, %d frames", v.name, n)
            with env.begin(write=True) as txn:
                txn.put(b"length", lmdb_key(len(names)))
            env.sync()
        finally:
            env.close()
    except lmdb.MapFullError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInputError(
            f"LMDB map full while packing into {target} (map_size {map_size / 2**30:.2f} GiB): "
            "raise pack_lmdb.map_size_gb or free disk space; nothing was written"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, target)
    splits = splits if splits is not None else {"train": names, "test": names}
    for split in ("train", "test"):
        text = "".join(f"{name}\n" for name in splits.get(split, []))
        write_bytes(out_dir / f"{split}_list.txt", text.encode())
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f"{TMP_PREFIX}old-{target.name}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class LmdbReader:
    """Read a PIRenderer/OTAvatar LMDB (``<root>/<size>/`` + split lists in `root`)."""

    def __init__(self, root: Path | str, size: int = 256):
        self.root = Path(root)
        path = self.root / str(size)
        if not (path / "data.mdb").is_file():
            raise BadInputError(f"no LMDB at {path} (data.mdb missing)")
        self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> LmdbReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _get(self, key: bytes) -> bytes | None:
        with self.env.begin(write=False) as txn:
            value = txn.get(key)
        return None if value is None else bytes(value)

    def n_videos(self) -> int:
        raw = self._get(b"length")
        return int(raw.decode()) if raw is not None else len(self.videos())

    def videos(self, split: str | None = None) -> list[str]:
        """Video names from ``<split>_list.txt`` (both lists when `split` is None)."""
        splits = [split] if split else ["train", "test"]
        names: list[str] = []
        for s in splits:
            p = self.root / f"{s}_list.txt"
            if p.is_file():
                names += [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        return names

    def length(self, video: str) -> int:
        raw = self._get(lmdb_key(video, "length"))
        if raw is None:
            raise KeyError(f"video {video!r} not in the LMDB")
        return int(raw.decode())

    def frame_bytes(self, video: str, i: int) -> bytes:
        raw = self._get(lmdb_key(video, i))
        if raw is None:
            raise KeyError(f"frame {i} of {video!r} not in the LMDB")
        return raw

    def frame(self, video: str, i: int) -> np.ndarray:
        """(S, S, 3) RGB uint8 frame `i` of `video`."""
        buf = np.frombuffer(self.frame_bytes(video, i), np.uint8)
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def frames(self, video: str) -> Iterator[np.ndarray]:
        for i in range(self.length(video)):
            yield self.frame(video, i)

    def array(self, video: str, name: str) -> np.ndarray | None:
        """A per-video float32 array (keypoint, coeff_3dmm, condition, id); None when absent."""
        raw = self._get(lmdb_key(video, name))
        if raw is None:
            return None
        flat = np.frombuffer(raw, "<f4")
        if name == "id":
            return flat.reshape(1, -1)
        n = self.length(video)
        return flat.reshape((n, *(ARRAY_KEYS.get(name) or (-1,))))
