"""Stage report: the subject's self-contained QA page and the dataset index across subjects.

Runs on whatever stages have finished (the demo runs perception only) and re-runs whenever any
other stage's manifest changed. Headline numbers across the dataset go to the logger as a table.
"""

from __future__ import annotations

import hashlib
import logging

from prep.io.files import write_bytes, write_json
from prep.pipeline import StageContext, StageResult, register_stage

log = logging.getLogger(__name__)


def _other_manifests(cfg) -> dict:
    """Fingerprints of every other stage's manifest: a re-run upstream re-runs the report."""
    from prep.subject import subject_dir

    folder = subject_dir(cfg).manifest_dir
    if not folder.is_dir():
        return {}
    return {
        f"manifest:{p.stem}": hashlib.sha1(p.read_bytes()).hexdigest()[:16]
        for p in sorted(folder.glob("*.json"))
        if p.stem != "report"
    }


@register_stage(
    "report",
    needs=(),
    config=("report",),
    version=1,
    writes=lambda s: [s.report_dir / "index.html"],
    fingerprint=_other_manifests,
)
def run(ctx: StageContext) -> StageResult:
    from prep.report.collect import collect
    from prep.report.index import SUMMARY, write_index
    from prep.report.page import subject_page

    cfg, subject = ctx.cfg.report, ctx.subject
    summary = collect(subject, cfg)
    page = subject_page(summary, subject, cfg)
    write_bytes(subject.report_dir / "index.html", page.encode("utf-8"))
    write_json(
        subject.report_dir / SUMMARY,
        {
            "name": subject.name,
            "headline": summary.headline,
            "stages": [m["stage"] for m in summary.manifests],
        },
    )
    log.info("report: %s", subject.report_dir / "index.html")
    if cfg.index:
        path, rows = write_index(subject.root.parent, ctx.cfg.dataset.name)
        log.info("report index: %s (%d subjects)", path, len(rows))
        if ctx.logger:
            keys = sorted({k for r in rows for k in r["headline"]})
            ctx.logger.log_table(
                "report/subjects",
                ["subject", *keys],
                [[r["name"], *[r["headline"].get(k) for k in keys]] for r in rows],
            )
    metrics = {k: v for k, v in summary.headline.items() if v == v}  # drop NaN
    return StageResult(n_frames=summary.n_frames, n_flagged=len(summary.flagged), metrics=metrics)
