"""Per-frame outputs are kept only while their key matches; `force` clears them and says why."""

import logging

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
