"""Renderers of a `DivergenceReport`: JSON for machines, Markdown and HTML for people.

Everything a renderer shows comes from the report itself (`report.to_dict()`), so a report
read back from its JSON renders the same page. Values appear only if the check captured
them (`--show-values`); otherwise fields show digests.
"""

from __future__ import annotations

from pathlib import Path

from dualsaver.checker.findings import DivergenceReport
from dualsaver.report._common import KIND_HELP, KIND_TITLES, verdict
from dualsaver.report._html import render_html
from dualsaver.report._markdown import to_markdown

__all__ = ["KIND_HELP", "KIND_TITLES", "to_html", "to_json", "to_markdown", "verdict", "write_reports"]


def to_json(report: DivergenceReport) -> str:
    return report.to_json(indent=2)


def to_html(report: DivergenceReport) -> str:
    return render_html(report)


def write_reports(
    report: DivergenceReport,
    *,
    json_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
    html_path: str | Path | None = None,
) -> None:
    for path, render in (
        (json_path, to_json),
        (markdown_path, to_markdown),
        (html_path, to_html),
    ):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(render(report), encoding="utf-8")
