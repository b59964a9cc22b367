"""HTML of a subject's QA page and of the dataset index: self-contained (inline SVG, data URIs).

The pages load nothing from the network. A small inline script checks that every plot and image
rendered and records the result on ``<body data-render-check=...>`` (used by the browser test).
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from prep.config.export import ReportConfig
from prep.io.files import encode_image, read_image
from prep.report.collect import SubjectSummary
from prep.report.plots import series_svg, timings_svg
from prep.subject import SubjectDir

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4;text-align:left} .num{text-align:right;font-variant-numeric:tabular-nums}
.thumbs{display:flex;flex-wrap:wrap;gap:.5em} .thumbs figure{margin:0;font-size:.75em;width:140px}
.plot svg{max-width:100%;height:auto} pre{background:#f8f8f8;padding:.6em;overflow:auto}
.muted{color:#888}
"""

CHECK_JS = """
window.addEventListener('load', function () {
  var bad = [];
  document.querySelectorAll('.plot svg').forEach(function (s, i) {
    var r = s.getBoundingClientRect(); if (r.width < 10 || r.height < 10) bad.push('plot' + i);
  });
  document.querySelectorAll('img').forEach(function (im, i) {
    if (!im.complete || im.naturalWidth === 0) bad.push('img' + i);
  });
  document.body.dataset.renderCheck = bad.length ? 'failed:' + bad.join(',') : 'ok';
  document.body.dataset.nPlots = String(document.querySelectorAll('.plot svg').length);
  if (bad.length) console.error('render check failed: ' + bad.join(','));
});
"""


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else f"{v:.4g}"
    return _e(v)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def thumbnail_uri(path: Path, edge: int) -> str | None:
    """PNG data URI of an image shrunk to `edge` px on its long side (None if unreadable)."""
    if not path.exists():
        return None
    img = read_image(path)
    s = edge / max(img.shape[:2])
    img = cv2.resize(
        img,
        (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
        interpolation=cv2.INTER_AREA,
    )
    return data_uri(encode_image(img, ".png"), "image/png")


def _frame_image(subject: SubjectDir, i: int) -> Path:
    for p in (subject.crop_frame_path(i), subject.image_path(i)):
        if p.exists():
            return p
    return subject.frame_path(i)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
        f"<script>{CHECK_JS}</script>\n</body></html>\n"
    )


def _table(header: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in header)
    trs = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_fmt(c)}</td>' if isinstance(c, int | float) else f"<td>{c}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{th}</tr>{trs}</table>"


def subject_page(summary: SubjectSummary, subject: SubjectDir, cfg: ReportConfig) -> str:
    """The whole QA page of one subject as an HTML string."""
    parts = [f"<h1>QA report: {_e(summary.name)}</h1>", f'<p class="muted">{_e(summary.root)}</p>']
    parts.append(
        "<h2>Summary</h2>"
        + _table(["metric", "value"], [[_e(k), float(v)] for k, v in summary.headline.items()])
    )
    parts.append(_stages_section(summary))
    if summary.series:
        parts.append("<h2>Per-frame curves</h2>")
        parts += [f'<div class="plot">{series_svg(s)}</div>' for s in summary.series]
    else:
        parts.append('<p class="muted">No per-frame outputs yet (run detect or later).</p>')
    parts.append(_flagged_section(summary, subject, cfg))
    parts.append(_overlay_section(summary, subject, cfg))
    parts.append(_config_section(summary))
    return _page(f"QA {summary.name}", "\n".join(parts))


def _stages_section(summary: SubjectSummary) -> str:
    if not summary.manifests:
        return '<h2>Stages</h2><p class="muted">No stage has finished yet.</p>'
    rows = []
    for m in summary.manifests:
        metrics = ", ".join(f"{_e(k)}={_fmt(v)}" for k, v in (m.get("metrics") or {}).items())
        secs = float(m.get("duration_s") or 0)
        n, n_flag = int(m.get("n_frames") or 0), int(m.get("n_flagged") or 0)
        rows.append([_e(m["stage"]), _e(m.get("started_at", "")), secs, n, n_flag, metrics])
    svg = timings_svg(
        [m["stage"] for m in summary.manifests],
        [float(m.get("duration_s") or 0) for m in summary.manifests],
    )
    header = ["stage", "started", "seconds", "frames", "flagged", "metrics"]
    return "<h2>Stages</h2>" + _table(header, rows) + f'<div class="plot">{svg}</div>'


def _flagged_section(summary: SubjectSummary, subject: SubjectDir, cfg: ReportConfig) -> str:
    out = [f"<h2>Flagged frames ({len(summary.flagged)})</h2>"]
    if not summary.flagged:
        return out[0] + "<p>No frame was flagged.</p>"
    shown = sorted(summary.flagged)[: cfg.max_flagged_thumbs]
    figs = []
    for i in shown:
        uri = thumbnail_uri(_frame_image(subject, i), cfg.thumb_px)
        img = f'<img alt="frame {i}" src="{uri}">' if uri else "<span>(no image)</span>"
        figs.append(
            f"<figure>{img}<figcaption>#{i}: "
            f"{_e('; '.join(summary.flagged[i]))}</figcaption></figure>"
        )
    more = len(summary.flagged) - len(shown)
    tail = f'<p class="muted">and {more} more</p>' if more > 0 else ""
    return out[0] + f'<div class="thumbs">{"".join(figs)}</div>{tail}'


def _overlay_section(summary: SubjectSummary, subject: SubjectDir, cfg: ReportConfig) -> str:
    if not summary.overlays:
        return '<h2>Overlays</h2><p class="muted">No overlay was written.</p>'
    items, budget = [], cfg.embed_total_mb * 1e6
    for p in summary.overlays:
        rel = Path("..") / p.relative_to(subject.root)
        label = _e(p.relative_to(subject.root))
        if p.suffix.lower() == ".png":
            uri = thumbnail_uri(p, 1000)
            items.append(
                f'<p>{label}</p><a href="{_e(rel)}"><img alt="{label}" '
                f'style="max-width:100%" src="{uri}"></a>'
            )
        elif p.stat().st_size <= min(cfg.embed_video_mb * 1e6, budget):
            budget -= p.stat().st_size
            uri = data_uri(p.read_bytes(), "video/mp4")
            items.append(
                f'<p>{label}</p><video controls muted preload="metadata" '
                f'style="max-width:100%" src="{uri}"></video>'
            )
        else:
            items.append(f'<p><a href="{_e(rel)}">{label}</a> (video, linked)</p>')
    return "<h2>Overlays</h2>" + "\n".join(items)


def _config_section(summary: SubjectSummary) -> str:
    blocks = []
    for m in summary.manifests:
        text = json.dumps(m.get("config", {}), indent=1, sort_keys=True, default=str)
        blocks.append(
            f"<details><summary>{_e(m['stage'])} (config hash "
            f"{_e(m.get('config_hash', ''))})</summary><pre>{_e(text)}</pre></details>"
        )
    return "<h2>Config used</h2>" + ("".join(blocks) or '<p class="muted">none</p>')


def index_page(dataset: str, rows: list[dict]) -> str:
    """The dataset index: one row per subject with its headline numbers and a link."""
    keys = sorted({k for r in rows for k in r.get("headline", {})})
    body = [f"<h1>QA index: {_e(dataset)} ({len(rows)} subjects)</h1>"]
    table_rows = []
    for r in rows:
        href = f"{quote(r['name'])}/report/index.html"
        link = f'<a href="{_e(href)}">{_e(r["name"])}</a>'
        table_rows.append([link] + [float(r["headline"].get(k, float("nan"))) for k in keys])
    body.append(_table(["subject", *keys], table_rows))
    return _page(f"QA index {dataset}", "\n".join(body))
