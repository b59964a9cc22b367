"""Per-frame outputs are kept only while their key matches; `force` clears them and says why."""

import logging

from prep.io.files import read_json
from prep.resume import outputs_for


def _frames(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:06d}.png").write_bytes(b"x")


def test_same_key_keeps_outputs(tmp_path):
    out, marker = tmp_path / "out", tmp_path / "m.json"
    assert outputs_for(marker, {"a": 1}, [out], force=False) == 0
    _frames(out)
    assert outputs_for(marker, {"a": 1}, [out], force=False) == 0
    assert len(list(out.iterdir())) == 3


def test_changed_key_clears_outputs(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="prep.resume")
    out, marker = tmp_path / "out", tmp_path / "m.json"
    outputs_for(marker, {"a": 1}, [out], force=False)
    _frames(out)
    assert outputs_for(marker, {"a": 2}, [out], force=False) == 3
    assert not list(out.iterdir())
    assert "other inputs or settings" in caplog.text


def test_force_clears_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="prep.resume")
    out, marker = tmp_path / "out", tmp_path / "m.json"
    outputs_for(marker, {"a": 1}, [out], force=False)
    _frames(out, 2)
    assert outputs_for(marker, {"a": 1}, [out], force=True) == 2
    assert "removed 2 previous outputs: force=true" in caplog.text
    assert "other inputs" not in caplog.text


def test_cleared_outputs_come_back_when_the_stage_fails(tmp_path):
    from prep.resume import replace_when_done

    out, marker, stash = tmp_path / "out", tmp_path / "m.json", tmp_path / ".stash" / "s"
    outputs_for(marker, {"a": 1}, [out], force=False)
    _frames(out)
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    try:
        with replace_when_done(stash):
            assert outputs_for(marker, {"a": 2}, [out], force=False) == 3
            assert not list(out.iterdir())
            (out / "000000.png").write_bytes(b"new, half done")
            raise RuntimeError("failed halfway")
    except RuntimeError:
        pass
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert read_json(marker) == {"a": 1}  # the old key too: the old outputs are valid again
    assert not (tmp_path / ".stash").exists()


def test_stash_is_dropped_when_the_stage_succeeds_or_is_interrupted(tmp_path):
    from prep.resume import remove_file, replace_when_done

    out, stash = tmp_path / "out", tmp_path / ".stash" / "s"
    _frames(out)
    with replace_when_done(stash):
        remove_file(out / "000001.png")
        assert (out / "000001.png").exists() is False and any(stash.iterdir())
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000002.png"]
    assert not stash.exists()
    try:
        with replace_when_done(stash):
            remove_file(out / "000000.png")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert [p.name for p in out.iterdir()] == ["000002.png"] and not stash.exists()


def test_without_a_stash_files_are_removed(tmp_path):
    from prep.resume import remove_files

    out = tmp_path / "out"
    _frames(out, 4)
    assert remove_files(out, lambda e: e.name.startswith("00000") and int(e.name[5]) >= 2) == 2
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png"]
