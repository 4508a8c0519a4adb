"""Renderers of a `PreflightReport`, beside the check's: JSON, Markdown and one HTML page.

The verdict first (can the target hold everything faithfully?), then counts per rule with
what each detects and why, the collision groups, and every finding (rule, thread, namespace,
checkpoint, where). Findings carry ids and JSON paths, never values. Every string from the
stores is escaped (Markdown: `_md`; HTML: `html.escape`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from dualsaver.preflight.findings import PreflightReport
from dualsaver.preflight.rules import BY_ID
from dualsaver.report._common import MAX_LISTED
from dualsaver.report._html import _CSS
from dualsaver.report._markdown import _md
from dualsaver.stores.faithful import ascii_safe

__all__ = ["preflight_html", "preflight_json", "preflight_markdown", "write_preflight_reports"]


def preflight_json(report: PreflightReport) -> str:
    return report.to_json(indent=2)


def _headline(report: PreflightReport) -> str:
    if report.clean:
        return f"The {report.target_kind} target can hold every scanned thread faithfully"
    threads = len(report.affected_threads())
    return (f"The {report.target_kind} target cannot hold {threads} thread(s) faithfully"
            f" ({sum(report.counts.values())} finding(s))")


def _where(ns: str | None, checkpoint_id: str | None) -> str:
    if ns is None:
        return "whole thread"
    return f"ns {ns or '(root)'}" + (f", checkpoint {checkpoint_id}" if checkpoint_id else "")


def preflight_markdown(report: PreflightReport) -> str:
    lines = ["# dualsaver preflight report", "", f"**{_md(_headline(report))}**", "",
             f"- old (scanned): `{report.old}`", f"- new (target, {report.target_kind}): `{report.new}`",
             f"- scanned: {report.threads_scanned} threads, {report.checkpoints_scanned} checkpoints"
             f" ({report.unreadable} unreadable)"]
    lines += [f"- note: {_md(note)}" for note in report.notes]
    if report.clean:
        return "\n".join(lines) + "\n"
    lines += ["", "## Findings by rule", "", "| rule | class | count | detects | why |", "|---|---|---:|---|---|"]
    for rule, n in sorted(report.counts.items()):
        r = BY_ID[rule]
        lines.append(f"| `{rule}` | `{r.rule_class}` | {n} | {_md(r.detects)} | {_md(r.why)} |")
    if groups := report.groups():
        lines += ["", "## Collisions", "", "| rule | shared key | threads |", "|---|---|---|"]
        lines += [f"| `{rule}` | `{_md(key)}` | {', '.join(f'`{_md(t)}`' for t in threads)} |"
                  for (rule, key), threads in groups.items()]
    lines += ["", "## Affected threads", "", "| rule | thread | where | what |", "|---|---|---|---|"]
    for n, f in enumerate(report.findings):
        if n == MAX_LISTED:
            lines.append(f"| ... | {len(report.findings) - MAX_LISTED} more (see the JSON) | | |")
            break
        lines.append(f"| `{f.rule}` | `{_md(f.thread_id)}` | {_md(_where(f.checkpoint_ns, f.checkpoint_id))}"
                     f" | {_md(f.what)} |")
    return ascii_safe("\n".join(lines) + "\n")  # an id with a lone surrogate is written as \udXXX


def preflight_html(report: PreflightReport) -> str:
    e = escape
    verdict = "yes" if report.clean else "no"
    body = [f'<div class="verdict {verdict}"><div class="big">{e(_headline(report))}</div>'
            f'<div class="sub">{report.threads_scanned} threads, {report.checkpoints_scanned} checkpoints scanned'
            f"</div></div>",
            '<div class="card"><dl class="meta">'
            f"<dt>old (scanned)</dt><dd><code>{e(report.old)}</code></dd>"
            f"<dt>new (target)</dt><dd><code>{e(report.new)}</code> ({e(report.target_kind)})</dd>"
            + "".join(f"<dt>note</dt><dd>{e(note)}</dd>" for note in report.notes)
            + "</dl></div>"]
    if not report.clean:
        body += ["<h2>Findings by rule</h2>", "<table><tr><th>rule</th><th>class</th><th>count</th>"
                 "<th>detects</th><th>why</th></tr>"]
        for rule, n in sorted(report.counts.items()):
            r = BY_ID[rule]
            body.append(f"<tr><td><code>{e(rule)}</code></td><td>{e(r.rule_class)}</td><td class=\"num\">{n}</td>"
                        f"<td>{e(r.detects)}</td><td>{e(r.why)}</td></tr>")
        body.append("</table>")
        if groups := report.groups():
            body += ["<h2>Collisions</h2>", "<table><tr><th>rule</th><th>shared key</th><th>threads</th></tr>"]
            body += [f"<tr><td><code>{e(rule)}</code></td><td class=\"mono\">{e(repr(key))}</td>"
                     f"<td class=\"mono\">{e(', '.join(repr(t) for t in threads))}</td></tr>"
                     for (rule, key), threads in groups.items()]
            body.append("</table>")
        body += ["<h2>Affected threads</h2>", "<table><tr><th>rule</th><th>thread</th><th>where</th><th>what</th></tr>"]
        body += [f"<tr><td><code>{e(f.rule)}</code></td><td class=\"mono\">{e(repr(f.thread_id))}</td>"
                 f"<td>{e(_where(f.checkpoint_ns, f.checkpoint_id))}</td><td>{e(f.what)}</td></tr>"
                 for f in report.findings[:MAX_LISTED]]
        body.append("</table>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>dualsaver preflight</title>"
            f"<style>{_CSS}</style></head><body><main><h1>dualsaver preflight report</h1>"
            + ascii_safe("".join(body)) + "</main></body></html>\n")


def write_preflight_reports(report: PreflightReport, *, json_path: str | Path | None = None,
                            markdown_path: str | Path | None = None, html_path: str | Path | None = None) -> None:
    for path, render in ((json_path, preflight_json), (markdown_path, preflight_markdown),
                         (html_path, preflight_html)):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(render(report), encoding="utf-8")
