"""A script can tell when the work it asked for was not done (issue 16 item 11).

On the old engine `stage=all matting=rvm` without the RVM weights exited 0 with "waiting" lines.
Now a stage the user asked for by name, backend or model choice that could not run makes the run
exit non-zero; the demo, which asks for nothing licence-gated, still exits 0 and lists what waits.
"""

from __future__ import annotations

from tests.cli_helpers import launch, one_error_line


def test_demo_exits_zero_and_requested_backend_does_not(tmp_path):
    common = [f"work_dir={tmp_path}", f"assets.root={tmp_path / 'no-assets'}", "logger=none"]
    demo = [*common, "dataset=demo", "frames.max_frames=6"]
    proc = launch(*demo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "waiting  fit_flame: flame2020: not found" in proc.stdout
    assert "waiting  export: waits for fit_flame" in proc.stdout
    line = one_error_line(launch(*demo, "matting=rvm"), alone=False)
    assert "stage matting could not run" in line and "rvm_mobilenetv3: not found" in line
    line = one_error_line(launch(*demo, "flame=flame2023"), alone=False)
    assert "stage fit_flame could not run" in line and "flame2023" in line
    # asked for by name: refused before any work, as before
    line = one_error_line(launch(*demo, "stage=fit_flame"))
    assert "flame2020: not found" in line
