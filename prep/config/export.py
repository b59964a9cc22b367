"""Schemas of exporters, the QA report and HDTF download (owned by the export engineer)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExportConfig:
    """Exporters (stage export)."""

    formats: list[str] = field(default_factory=lambda: ["imavatar"])


@dataclass
class ReportConfig:
    """QA report (stage report)."""


@dataclass
class DownloadConfig:
    """HDTF acquisition (stage download)."""
