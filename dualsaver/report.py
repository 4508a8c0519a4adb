"""Renderers of a `DivergenceReport`: JSON for machines, Markdown and HTML for people.

Everything a renderer shows comes from the report itself (`report.to_dict()`), so a report
read back from its JSON renders the same page. Values appear only if the check captured
them (`--show-values`); otherwise fields show digests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dualsaver.divergence import KINDS, DivergenceReport

KIND_TITLES = {
    "missing_in_new": "missing in new",
    "missing_in_old": "missing in old",
    "checkpoint_mismatch": "checkpoint mismatch",
    "metadata_mismatch": "metadata mismatch",
    "writes_mismatch": "writes mismatch",
    "unreadable": "unreadable",
}
KIND_HELP = {
    "missing_in_new": "checkpoints the old store has and the new one lacks",
    "missing_in_old": "checkpoints only the new store has",
    "checkpoint_mismatch": "channel values, versions, versions seen or parent differ",
    "metadata_mismatch": "checkpoint metadata differs",
    "writes_mismatch": "pending writes differ in content or order",
    "unreadable": "rows that failed to load in one store or both",
}
MAX_LISTED = 500  # divergences shown per page; the JSON keeps them all


def to_json(report: DivergenceReport) -> str:
    return report.to_json(indent=2)


def verdict(report: DivergenceReport) -> str:
    return "yes" if report.clean else "no"


def scope_note(summary: Mapping[str, Any]) -> str | None:
    """Why a clean verdict may not cover every thread."""
    parts = []
    if summary.get("shard"):
        parts.append(f"shard {summary['shard']} only")
    if summary.get("thread_filter") is not None:
        parts.append(f"{summary['thread_filter']} selected thread(s) only")
    return "; ".join(parts) or None


def show_cell(value: Any) -> str:
    """One field side as short text: a digest, a plain value, or 'absent'."""
    if value is None:
        return "absent"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={show_cell(v)}" for k, v in value.items())
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def show_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str)


def by_thread(report: DivergenceReport) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for d in report.divergences:
        grouped.setdefault(d.thread_id, []).append(d)
    return grouped


# --------------------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell (no pipes, no raw HTML, one line)."""
    s = " ".join(str(text).split())
    for ch in ("\\", "|", "<", ">", "*", "_", "`", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s


def to_markdown(report: DivergenceReport) -> str:
    s = report.summary
    lines = [
        "# dualsaver check report",
        "",
        f"**Safe to switch reads: {verdict(report)}**"
        + (f" ({_md(note)})" if (note := scope_note(s)) else ""),
        "",
        f"- old: `{s.get('stores', {}).get('old', '?')}`",
        f"- new: `{s.get('stores', {}).get('new', '?')}`",
        f"- compared: {s.get('threads_compared', 0)} threads,"
        f" {s.get('checkpoints_compared', 0)} checkpoints"
        f" ({s.get('checkpoints_old', 0)} in old, {s.get('checkpoints_new', 0)} in new)",
        f"- finished: {s.get('finished_at', '?')} in {s.get('duration_seconds', '?')} s",
    ]
    recheck = s.get("recheck") or {}
    if recheck.get("enabled"):
        lines.append(
            f"- re-check: {recheck.get('suspect_threads', 0)} suspect thread(s),"
            f" {recheck.get('cleared_threads', 0)} cleared by re-reading"
            f" ({recheck.get('rounds', 0)} round(s))"
        )
    for warning in s.get("warnings") or []:
        lines.append(f"- warning: {_md(warning)}")
    counts = s.get("counts") or report.counts()
    lines += ["", "## Divergences by kind", "", "| kind | count | meaning |", "|---|---:|---|"]
    lines += [f"| {KIND_TITLES[k]} | {counts.get(k, 0)} | {KIND_HELP[k]} |" for k in KINDS]
    if report.clean:
        lines += ["", "No divergence: every compared checkpoint is identical in both stores."]
        return "\n".join(lines) + "\n"

    grouped = by_thread(report)
    lines += ["", "## Affected threads", "", "| thread | divergences | kinds |", "|---|---:|---|"]
    for thread_id, items in grouped.items():
        kinds = sorted({d.kind for d in items}, key=KINDS.index)
        lines.append(f"| `{_md(thread_id)}` | {len(items)} | {', '.join(kinds)} |")
    lines += ["", "## Details", ""]
    if not s.get("values_shown"):
        lines += ["Values are shown as digests (`sha256:` + 16 hex digits); run the check"
                  " with `--show-values` to see them.", ""]
    for n, d in enumerate(report.divergences):
        if n == MAX_LISTED:
            lines.append(f"... and {len(report.divergences) - MAX_LISTED} more (see the JSON).")
            break
        lines.append(
            f"### {KIND_TITLES.get(d.kind, d.kind)}: thread `{_md(d.thread_id)}`,"
            f" ns `{_md(d.checkpoint_ns) or '(root)'}`, checkpoint `{_md(d.checkpoint_id)}`"
        )
        lines.append("")
        notes = {k: v for k, v in d.detail.items() if k not in ("fields",) and v is not None}
        for key, value in notes.items():
            lines.append(f"- {key}: {_md(show_cell(value))}")
        fields = d.detail.get("fields") or []
        if fields:
            lines += ["", "| field | old | new |", "|---|---|---|"]
            for f in fields:
                lines.append(
                    f"| {_md(f.get('field'))} | {_md(show_cell(f.get('old')))} |"
                    f" {_md(show_cell(f.get('new')))} |"
                )
            for f in fields:
                if "old_value" in f or "new_value" in f:
                    lines += ["", f"{_md(f.get('field'))} values:", "", "```json",
                              "old: " + show_value(f.get("old_value")).replace("```", "'''"),
                              "new: " + show_value(f.get("new_value")).replace("```", "'''"),
                              "```"]
        lines.append("")
    return "\n".join(lines) + "\n"


def to_html(report: DivergenceReport) -> str:
    from dualsaver.report_html import render_html

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
