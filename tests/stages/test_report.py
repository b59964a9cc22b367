"""Stage report: the headline numbers across subjects go to the experiment logger as a table."""

from __future__ import annotations

from prep.logger import ExperimentLogger
from prep.pipeline import StageContext, get_stage
from tests.export.synthetic_subject import make_subject


class RecordingLogger(ExperimentLogger):
    def __init__(self):
        self.tables = []

    def log_table(self, key, columns, rows):
        self.tables.append((key, columns, rows))


def test_report_logs_a_table_across_subjects(compose_cfg, tmp_path):
    work = tmp_path / "work" / "custom"
    subjects = [make_subject(work / name, seed=k) for k, name in enumerate(("s1", "s2"))]
    stage = get_stage("report")
    logger = RecordingLogger()
    for s in subjects:
        cfg = compose_cfg("dataset=custom", f"subject={s.name}", "stage=report")
        result = stage.run(StageContext(cfg, s, "report", logger=logger))
        assert result.metrics["n_flagged"] == result.n_flagged == 2  # the two invalid frames
    key, columns, rows = logger.tables[-1]
    assert key == "report/subjects" and columns[0] == "subject"
    assert [r[0] for r in rows] == ["s1", "s2"]
    col = columns.index("lmk_rmse_px_median")
    assert all(0.5 <= r[col] <= 2.0 for r in rows)  # the synthetic tracker's 0.5-2 px errors
