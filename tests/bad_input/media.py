"""Bad inputs made from the real test media: empty, corrupt and truncated videos, two faces in
one frame, a small face in a large frame, one photo, a noise clip, unrelated photos, hostile model
files, a server that never answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from pathlib import Path

import av
import numpy as np
from PIL import Image


def faststart_copy(src: Path, dst: Path, max_s: float | None = None) -> Path:
    """Remux `src` (up to `max_s` seconds) with the index at the front, as streaming sites
    serve files: a truncated copy of such a file still plays up to where it was cut."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        streams = {
            s.index: o.add_stream_from_template(s)
            for s in i.streams
            if s.type in ("video", "audio")
        }
        for pkt in i.demux():
            if pkt.dts is None or pkt.stream.index not in streams:
                continue
            if max_s is not None and pkt.pts is not None and pkt.pts * pkt.time_base >= max_s:
                continue
            pkt.stream = streams[pkt.stream.index]
            o.mux(pkt)
    return dst


def truncated_copy(src: Path, dst: Path, keep: float = 0.3) -> Path:
    """A playable file cut after `keep` of its bytes (a download that stopped)."""
    full = faststart_copy(src, dst.with_name("full-" + dst.name))
    raw = full.read_bytes()
    dst.write_bytes(raw[: int(len(raw) * keep)])
    return dst


def corrupt_file(dst: Path, n_bytes: int = 200_000, seed: int = 0) -> Path:
    dst.write_bytes(np.random.default_rng(seed).bytes(n_bytes))
    return dst


def empty_file(dst: Path) -> Path:
    dst.write_bytes(b"")
    return dst


def _face(photos: Path, side: int) -> Image.Image:
    face = Image.open(photos / "p02_frontal_smile_ffhq00018.png").convert("RGB")
    return face.resize((side, side), Image.LANCZOS)


def two_faces_folder(photos: Path, folder: Path, n: int = 3) -> Path:
    """Frames showing two different people side by side (the left one larger)."""
    other = Image.open(photos / "p08_expr_surprise_hires_exp4.jpg").convert("RGB")
    other = other.resize((int(other.width * 200 / other.height), 200), Image.LANCZOS)
    canvas = Image.new("RGB", (720, 360), (90, 90, 90))
    canvas.paste(_face(photos, 300), (20, 30))
    canvas.paste(other, (380, 80))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        canvas.save(folder / f"{i:03d}.png")
    return folder


def small_face_folder(photos: Path, folder: Path, n: int = 3) -> Path:
    """A face about 60 px wide in a 480x360 frame (a 512 crop upscales it ~4x)."""
    canvas = Image.new("RGB", (480, 360), (90, 90, 90))
    canvas.paste(_face(photos, 110), (190, 120))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        canvas.save(folder / f"{i:03d}.png")
    return folder


class SystemPayload:
    """Unpickling it runs ``touch <marker>`` through os.system (pickles as posix.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_npy(path: Path, marker: Path) -> Path:
    """An .npy dict (AD-NeRF's layout) whose pickle would create `marker` when loaded."""
    np.save(path, np.array({"mu_shape": SystemPayload(marker)}, dtype=object), allow_pickle=True)
    return path


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"state_dict": {"w": SystemPayload(marker)}}, path)
    return path


def other_flame_model(folder: Path) -> Path:
    """A FLAME-format model other than the finished subject's (another identity basis)."""
    from tests.fixtures.synthetic_flame import build_tiny_flame_dict, write_flame_pickle

    return write_flame_pickle(folder / "other_generic_model.pkl", build_tiny_flame_dict(seed=7))


def tree_digest(root: Path) -> dict[str, str]:
    """Content hash of every file under a subject folder (the lock file aside)."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@contextlib.contextmanager
def silent_server():
    """A local TCP server that accepts every connection and never sends a byte; yields its URL.

    What a W&B server behind a broken proxy looks like to a client (issue 16, item 10).
    """
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        for c in held:
            c.close()


def first_frame(clip: Path) -> np.ndarray:
    """The first frame of a video, RGB uint8."""
    with av.open(str(clip)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def one_photo_folder(photos: Path, folder: Path) -> Path:
    """A folder holding a single photo (one frontal face)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(photos / "p02_frontal_smile_ffhq00018.png", folder)
    return folder


def noise_clip(clip: Path, dst: Path, n: int = 20, face_at: tuple[int, ...] = (3, 12)) -> Path:
    """`n` frames of uniform noise, the first frame of `clip` in place of frames `face_at`."""
    from prep.io.video_writer import write_video

    face = first_frame(clip)
    rng = np.random.default_rng(0)
    frames = (
        face if i in face_at else rng.integers(0, 256, face.shape, dtype=np.uint8) for i in range(n)
    )
    write_video(dst, frames, fps=25)
    return dst


def unrelated_photos_folder(photos: Path, clip: Path, folder: Path) -> Path:
    """Four different people (three photos and a video frame), letterboxed to one 512 size."""
    from tests.vision.perception_data import letterbox

    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(photos.iterdir())]
    folder.mkdir(parents=True, exist_ok=True)
    for k, rgb in enumerate([*images, first_frame(clip)]):
        Image.fromarray(letterbox(rgb)).save(folder / f"{k:02d}.png")
    return folder
