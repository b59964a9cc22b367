"""Run every bad input of `tests/bad_input/cases.py` as a user would and check what they get:
the exit code, one clear message, and a finished subject left intact. The table of all cases
(case, exit code, message, outputs intact) is printed at the end of the test session."""

from __future__ import annotations

import pytest

from tests.bad_input.cases import CASES, CLIP, PHOTOS, ROWS, Case, Ctx
from tests.bad_input.media import tree_digest
from tests.cli_helpers import error_lines, launch, one_error_line


def _message(case: Case, proc) -> str:
    errors = error_lines(proc)
    if errors:
        return errors[-1]
    text = proc.stdout + proc.stderr
    hit = next((ln for ln in text.splitlines() if case.says in ln), "")
    if hit.startswith("[") and "] " in hit:  # a log line: drop the time stamp
        hit = hit.split("] ", 1)[1]
    return hit


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, request, tmp_path):
    for need in (CLIP, PHOTOS):
        if not need.exists():
            pytest.skip(f"test media not present: {need}")
    why = case.skip() if case.skip else None
    if why:
        pytest.skip(why)
    ctx = Ctx(tmp=tmp_path / "scratch", work=tmp_path / "work", marker=tmp_path / "pwned")
    ctx.tmp.mkdir()
    before = None
    if case.finished:
        finished = request.getfixturevalue("finished")
        finished.copy(tmp_path)
        ctx.base = finished.overrides(ctx.work)
        before = tree_digest(ctx.subject)
    if case.run is not None:
        proc = case.run(ctx)
    else:
        proc = launch(*case.args(ctx), full_disk=ctx.work if case.full_disk else None)
    intact = None
    if before is not None:
        after = tree_digest(ctx.subject)
        kept = {k: v for k, v in before.items() if not k.startswith(case.may_change or ("\0",))}
        intact = all(after.get(k) == v for k, v in kept.items())
    ROWS.append((case.name, proc.returncode, _message(case, proc), intact))
    output = proc.stdout + proc.stderr
    assert proc.returncode == case.exit, output[-3000:]
    assert case.says in output, output[-3000:]
    assert "Traceback" not in output
    if case.exit == 2:
        one_error_line(proc, alone=False)
    assert intact in (None, True), "the finished subject lost or changed outputs"
    if case.check is not None:
        case.check(ctx, proc)
