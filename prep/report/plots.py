"""Per-frame curves and stage timings as inline SVG (matplotlib, Agg backend, no files)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prep.report.collect import Series  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files, selectable labels


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue and DOCTYPE: inline in HTML


def _invalid_spans(invalid: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True."""
    d = np.diff(np.concatenate([[0], invalid.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def series_svg(s: Series, width_in: float = 9.0, height_in: float = 2.4) -> str:
    """One per-frame curve (or several columns) with invalid frames shaded."""
    fig, ax = plt.subplots(figsize=(width_in, height_in))
    v = s.values if s.values.ndim == 2 else s.values[:, None]
    frames = np.arange(len(v))
    for k in range(v.shape[1]):
        label = s.labels[k] if k < len(s.labels) else None
        ax.plot(frames, v[:, k], lw=1.0, label=label)
    if s.invalid is not None:
        for a, b in _invalid_spans(s.invalid):
            ax.axvspan(a - 0.5, b - 0.5, color="tab:red", alpha=0.15, lw=0)
    if s.threshold is not None:
        ax.axhline(s.threshold, color="tab:red", ls="--", lw=0.8, label="flag threshold")
    ax.set_title(s.title, fontsize=10)
    ax.set_xlabel("frame")
    ax.set_ylabel(s.ylabel)
    ax.set_xlim(-0.5, max(len(v) - 0.5, 0.5))
    ax.grid(alpha=0.3)
    if s.labels or s.threshold is not None:
        ax.legend(fontsize=8, loc="upper right")
    return _svg(fig)


def timings_svg(stages: list[str], seconds: list[float]) -> str:
    """Horizontal bars of stage wall time."""
    fig, ax = plt.subplots(figsize=(7.0, 0.35 * max(len(stages), 1) + 0.8))
    y = np.arange(len(stages))
    ax.barh(y, seconds, color="tab:blue")
    ax.set_yticks(y, stages)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Stage wall time", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)
