"""PIRenderer/OTAvatar LMDB: exact keys, round trip, refusal, full map, foreign databases."""

from __future__ import annotations

import cv2
import lmdb
import numpy as np
import pytest

from prep.errors import BadInputError
from prep.export.lmdb import LmdbReader, LmdbVideo, lmdb_key, write_lmdb


def _video(name: str, n: int, size: int = 64, seed: int = 0) -> LmdbVideo:
    rng = np.random.default_rng(seed)
    frames = [np.full((size, size, 3), (10 * i, 100, 200 - 10 * i), np.uint8) for i in range(n)]
    return LmdbVideo(
        name=name,
        frames=iter(frames),
        keypoint=rng.uniform(0, size, (n, 68, 2)).astype(np.float32),
        coeff_3dmm=rng.normal(size=(n, 260)).astype(np.float32),
        condition=rng.normal(size=(n, 7)).astype(np.float32),
        id=rng.normal(size=(1, 100)).astype(np.float32),
    )


def test_key_format_pads_integers_to_seven_digits():
    assert lmdb_key("vid", 12) == b"vid-0000012"
    assert lmdb_key("vid", "coeff_3dmm") == b"vid-coeff_3dmm"


def test_round_trip_with_exact_key_scheme(tmp_path):
    a, b = _video("WDA_A#0", 5, seed=1), _video("WDA_B#1", 3, seed=2)
    target = write_lmdb(
        tmp_path, [a, b], size=64, splits={"train": ["WDA_A#0"], "test": ["WDA_B#1"]}
    )
    assert target == tmp_path / "64" and (target / "data.mdb").is_file()
    env = lmdb.open(str(target), readonly=True, lock=False)
    with env.begin() as txn:
        keys = {k.decode() for k, _ in txn.cursor()}
        # counts as both prepare scripts write them: format_for_lmdb(n), 7 digits
        assert txn.get(b"length") == b"0000002"
        assert txn.get(b"WDA_A#0-length") == b"0000005"
    env.close()
    expected = (
        {"length"} | {f"WDA_A#0-{i:07d}" for i in range(5)} | {f"WDA_B#1-{i:07d}" for i in range(3)}
    )
    for v in ("WDA_A#0", "WDA_B#1"):
        expected |= {f"{v}-{k}" for k in ("length", "keypoint", "coeff_3dmm", "condition", "id")}
    assert keys == expected
    assert (tmp_path / "train_list.txt").read_text() == "WDA_A#0\n"
    assert (tmp_path / "test_list.txt").read_text() == "WDA_B#1\n"
    with LmdbReader(tmp_path, 64) as r:
        assert r.n_videos() == 2 and r.videos("test") == ["WDA_B#1"]
        a2 = _video("WDA_A#0", 5, seed=1)
        np.testing.assert_array_equal(r.array("WDA_A#0", "keypoint"), a2.keypoint)
        np.testing.assert_array_equal(r.array("WDA_A#0", "coeff_3dmm"), a2.coeff_3dmm)
        np.testing.assert_array_equal(r.array("WDA_A#0", "condition"), a2.condition)
        assert r.array("WDA_A#0", "id").shape == (1, 100)
        frame = r.frame("WDA_A#0", 3)
        assert frame.shape == (64, 64, 3)
        assert np.abs(frame.astype(int) - [30, 100, 170]).max() <= 3  # RGB order survives


def test_frames_are_resized_to_the_lmdb_size(tmp_path):
    v = _video("v", 2, size=100)
    write_lmdb(tmp_path, [v], size=64)
    with LmdbReader(tmp_path, 64) as r:
        assert r.frame("v", 1).shape == (64, 64, 3)


def test_existing_target_is_refused_unless_forced(tmp_path):
    write_lmdb(tmp_path, [_video("v", 2)], size=64)
    with pytest.raises(BadInputError, match="already exists.*force=true"):
        write_lmdb(tmp_path, [_video("w", 2)], size=64)
    write_lmdb(tmp_path, [_video("w", 3)], size=64, force=True)
    with LmdbReader(tmp_path, 64) as r:
        assert r.length("w") == 3 and r.n_videos() == 1
        with pytest.raises(KeyError):
            r.length("v")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["64", "test_list.txt", "train_list.txt"]


def test_full_map_is_a_clear_error_and_leaves_nothing(tmp_path):
    big = _video("v", 40, size=64)
    big.frames = iter(
        [np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8) for i in range(40)]
    )
    with pytest.raises(BadInputError, match="map full.*map_size_gb"):
        write_lmdb(tmp_path, [big], size=64, map_size=64 * 1024)
    assert list(tmp_path.iterdir()) == []


def test_mismatched_frame_count_is_rejected_without_a_database(tmp_path):
    v = _video("v", 4)
    v.frames = iter(list(v.frames)[:3])
    with pytest.raises(BadInputError, match="3 frames but 4"):
        write_lmdb(tmp_path, [v], size=64)
    assert not (tmp_path / "64").exists()


def test_reads_an_otavatar_style_database_written_by_hand(tmp_path):
    # As OTAvatar_processing writes it: no condition/id keys, frames 512, person#clip names.
    db = tmp_path / "512"
    env = lmdb.open(str(db), map_size=1 << 24)
    n, name = 2, "RD_Radio1_000#3"
    with env.begin(write=True) as txn:
        for i in range(n):
            ok, buf = cv2.imencode(".jpg", np.zeros((512, 512, 3), np.uint8))
            txn.put(f"{name}-{i:07d}".encode(), buf.tobytes())
        txn.put(f"{name}-length".encode(), str(n).encode())
        txn.put(f"{name}-coeff_3dmm".encode(), np.ones((n, 260), np.float32).tobytes())
        txn.put(f"{name}-keypoint".encode(), np.zeros((n, 68, 2), np.float32).tobytes())
        txn.put(b"length", b"1")
    env.close()
    (tmp_path / "train_list.txt").write_text(f"{name}\n")
    with LmdbReader(tmp_path, 512) as r:
        assert r.videos() == [name] and r.length(name) == 2
        assert r.array(name, "coeff_3dmm").shape == (2, 260)
        assert r.array(name, "condition") is None
        assert r.frame(name, 1).shape == (512, 512, 3)


def test_crop_params_follow_the_frames_to_the_stored_size():
    """Deep3DFaceRecon's alignment of the 256 frames equals the 512 one carried over: solving
    POS on the resized landmarks gives the converted parameters."""
    from prep.export.lmdb import crop_params_at_size
    from prep.track.bfm_align import pos_align

    rng = np.random.default_rng(0)
    lm3d_5 = rng.normal(0, 0.5, (5, 3))
    lmk = rng.uniform(150, 350, (4, 68, 2))
    tp512 = pos_align(lmk, (512, 512), lm3d_5)
    for size in (256, 512):
        lmk_s = (lmk + 0.5) * size / 512 - 0.5
        want = pos_align(lmk_s, (size, size), lm3d_5)[:, 2:5]
        np.testing.assert_allclose(crop_params_at_size(tp512, size), want, rtol=1e-5, atol=1e-3)
