"""The Markdown divergence report: the verdict, counts per kind, the affected threads, and
per divergence the fields that differ (digests unless values were captured)."""

from __future__ import annotations

from typing import Any

from dualsaver.checker.findings import ALL_KINDS, DivergenceReport
from dualsaver.report._common import (
    KIND_HELP, KIND_TITLES, MAX_LISTED, NEXT_STEP, by_thread, collapsed, kinds_shown, scope_note, show_cell,
    show_value, verdict,
)


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
    if items := s.get("items"):
        lines.append(f"- store items compared: {items.get('compared', 0)} ({items.get('old', 0)} in old,"
                     f" {items.get('new', 0)} in new)")
    recheck = s.get("recheck") or {}
    if recheck.get("enabled"):
        lines.append(
            f"- re-check: {recheck.get('suspect_threads', 0)} suspect thread(s),"
            f" {recheck.get('cleared_threads', 0)} cleared by re-reading"
            f" ({recheck.get('rounds', 0)} round(s))"
        )
    inexact = [side for side in ("old", "new") if (s.get("exact") or {}).get(side) is False]
    if inexact:
        lines.append(f"- precision: {' and '.join(inexact)} store read through the public API: write"
                     " task paths and indexes not compared (a copy through it may reorder parallel writes)")
    for warning in s.get("warnings") or []:
        lines.append(f"- warning: {_md(warning)}")
    counts = s.get("counts") or report.counts()
    lines += ["", "## Divergences by kind", "", "| kind | count | meaning |", "|---|---:|---|"]
    lines += [f"| {KIND_TITLES[k]} | {counts.get(k, 0)} | {KIND_HELP[k]} |" for k in kinds_shown(report)]
    if report.clean:
        lines += ["", "No divergence: every compared checkpoint is identical in both stores."]
        return "\n".join(lines) + "\n"

    grouped = by_thread(report)
    lines += ["", f"**{_md(NEXT_STEP)}**"]
    lines += ["", "## Affected threads", "", "| thread | divergences | kinds |", "|---|---:|---|"]
    for thread_id, items in grouped.items():
        kinds = sorted({d.kind for d in items}, key=ALL_KINDS.index)
        lines.append(f"| `{_md(thread_id)}` | {len(items)} | {', '.join(kinds)} |")
    lines += ["", "## Details", ""]
    if not s.get("values_shown"):
        lines += ["Values are shown as digests (`sha256:` + 16 hex digits); run the check"
                  " with `--show-values` to see them.", ""]
    entries = [entry for items in grouped.values() for entry in collapsed(items)]
    for n, entry in enumerate(entries):
        if n == MAX_LISTED:
            lines.append(f"... and {len(entries) - MAX_LISTED} more (see the JSON).")
            break
        d = entry.first
        lines.append(
            f"### {KIND_TITLES.get(d.kind, d.kind)}: thread `{_md(d.thread_id)}`,"
            f" ns `{_md(entry.namespace)}`, checkpoint `{_md(entry.checkpoints)}`"
        )
        lines.append("")
        for key, value in entry.notes.items():
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
