"""The HTML divergence report: one self-contained page (inline CSS, no script, no network).

The verdict comes first, large; then what was compared, counts per kind, the affected
threads, and per divergence the fields that differ. Every string from the stores goes
through `html.escape`: thread ids and values are data, never markup.
"""

from __future__ import annotations

from html import escape
from typing import Any

from dualsaver.checker.findings import ALL_KINDS, DivergenceReport
from dualsaver.report._common import (
    KIND_HELP,
    KIND_TITLES,
    kinds_shown,
    MAX_LISTED,
    NEXT_STEP,
    Entry,
    by_thread,
    collapsed,
    scope_note,
    show_cell,
    show_value,
    verdict,
)

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;
 color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:20px;font-weight:600;margin:0 0 16px;color:#57606a}
h2{font-size:18px;margin:32px 0 10px}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:13px}
.verdict{border-radius:10px;padding:22px 26px;margin-bottom:18px;color:#fff}
.verdict.yes{background:#1a7f37}.verdict.no{background:#cf222e}
.verdict .big{font-size:34px;font-weight:700;letter-spacing:.2px}
.verdict .sub{font-size:15px;opacity:.95;margin-top:4px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 18px;margin:10px 0}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
dl.meta dt{color:#57606a}dl.meta dd{margin:0;word-break:break-all}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #d0d7de;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;width:90px}
tr.zero td{color:#8c959f}
.kind{display:inline-block;border-radius:12px;padding:1px 9px;font-size:12px;font-weight:600;
 color:#fff;background:#6e7781;white-space:nowrap}
.k-missing_in_new,.k-missing_in_old{background:#bc4c00}
.k-checkpoint_mismatch{background:#8250df}.k-metadata_mismatch{background:#0969da}
.k-writes_mismatch{background:#1b7c83}.k-unreadable{background:#cf222e}
details.thread{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:10px 0}
details.thread>summary{cursor:pointer;padding:10px 14px;font-weight:600;word-break:break-all}
details.thread>div{padding:0 14px 12px}
.div{border-top:1px solid #eaeef2;padding-top:10px;margin-top:10px}
.div .where{margin-bottom:6px;word-break:break-all}
table.fields{table-layout:fixed}.fields td{word-break:break-all}
.fields th:first-child{width:24%}
.absent{color:#8c959f;font-style:italic}
pre{margin:4px 0 0;padding:8px;background:#f6f8fa;border:1px solid #eaeef2;border-radius:6px;
 white-space:pre-wrap;word-break:break-word;max-height:320px;overflow:auto}
.note{color:#57606a;font-size:13px}
.ok{color:#1a7f37;font-weight:600}
footer{margin-top:36px;color:#8c959f;font-size:12px}
"""


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="absent">absent</span>'
    return f'<span class="mono">{escape(show_cell(value))}</span>'


def _header(report: DivergenceReport) -> list[str]:
    s = report.summary
    answer = verdict(report)
    n = len(report.divergences)
    threads = len({d.thread_id for d in report.divergences})
    if report.clean:
        sub = "No divergence: every compared checkpoint is identical in both stores."
    else:
        sub = f"{n} divergence{'s' * (n != 1)} in {threads} thread{'s' * (threads != 1)}."
    if note := scope_note(s):
        sub += f" Scope: {escape(note)}."
    return [
        f'<section class="verdict {answer}" id="verdict">',
        f'<div class="big">Safe to switch reads: {answer}</div>',
        f'<div class="sub">{sub}</div>',
        "</section>",
    ]


def _meta(report: DivergenceReport) -> list[str]:
    s = report.summary
    stores = s.get("stores") or {}
    rows = [
        ("old store", stores.get("old", "?")),
        ("new store", stores.get("new", "?")),
        (
            "compared",
            f"{s.get('threads_compared', 0)} threads, {s.get('checkpoints_compared', 0)}"
            f" checkpoints ({s.get('checkpoints_old', 0)} in old, {s.get('checkpoints_new', 0)}"
            f" in new), {s.get('writes_old', 0)} / {s.get('writes_new', 0)} pending writes",
        ),
        ("finished", f"{s.get('finished_at', '?')} ({s.get('duration_seconds', '?')} s)"),
    ]
    recheck = s.get("recheck") or {}
    if recheck.get("enabled"):
        rows.append(
            (
                "re-check",
                f"{recheck.get('suspect_threads', 0)} suspect thread(s) re-read,"
                f" {recheck.get('cleared_threads', 0)} cleared (writes that landed during the"
                f" check), {recheck.get('rounds', 0)} round(s)",
            )
        )
    else:
        rows.append(("re-check", "off: divergences were not re-read before reporting"))
    exact = s.get("exact") or {}
    inexact = [side for side in ("old", "new") if exact.get(side) is False]
    if inexact:
        rows.append(
            (
                "precision",
                f"{' and '.join(inexact)} store read through the public API: write task paths"
                " and indexes not compared",
            )
        )
    for warning in s.get("warnings") or []:
        rows.append(("warning", warning))
    out = ['<section class="card"><dl class="meta">']
    out += [f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows]
    out.append("</dl></section>")
    return out


def _counts(report: DivergenceReport) -> list[str]:
    counts = report.summary.get("counts") or report.counts()
    out = [
        '<h2>Divergences by kind</h2><table id="counts">',
        "<tr><th>kind</th><th>count</th><th>meaning</th></tr>",
    ]
    for kind in kinds_shown(report):
        c = int(counts.get(kind, 0))
        out.append(
            f'<tr class="{"zero" if not c else "hit"}"><td><span class="kind k-{kind}">'
            f'{KIND_TITLES[kind]}</span></td><td class="num">{c}</td>'
            f"<td>{escape(KIND_HELP[kind])}</td></tr>"
        )
    out.append("</table>")
    return out


def _threads(report: DivergenceReport, grouped: dict[str, list]) -> list[str]:
    out = [
        '<h2>Affected threads</h2><table id="threads">',
        "<tr><th>thread</th><th>divergences</th><th>kinds</th></tr>",
    ]
    for n, (thread_id, items) in enumerate(grouped.items()):
        kinds = sorted({d.kind for d in items}, key=ALL_KINDS.index)
        badges = " ".join(f'<span class="kind k-{k}">{KIND_TITLES[k]}</span>' for k in kinds)
        out.append(
            f'<tr><td class="mono"><a href="#t{n}">{escape(thread_id)}</a></td>'
            f'<td class="num">{len(items)}</td><td>{badges}</td></tr>'
        )
    out.append("</table>")
    return out


def _divergence(entry: Entry) -> list[str]:
    d = entry.first
    where = (
        f'<span class="kind k-{d.kind}">{KIND_TITLES.get(d.kind, escape(d.kind))}</span> '
        f'namespace <code>{escape(entry.namespace)}</code> checkpoint <code>{escape(entry.checkpoints)}</code>'
    )
    out = ['<div class="div">', f'<div class="where">{where}</div>']
    notes = entry.notes
    if notes:
        out.append('<div class="note">')
        out.append("; ".join(f"{escape(k)}: {escape(show_cell(v))}" for k, v in notes.items()))
        out.append("</div>")
    fields = d.detail.get("fields") or []
    if fields:
        out.append('<table class="fields"><tr><th>field</th><th>old</th><th>new</th></tr>')
        for f in fields:
            row = [f'<td class="mono">{escape(str(f.get("field")))}</td>']
            for side in ("old", "new"):
                cell = _cell(f.get(side))
                if f"{side}_value" in f:
                    cell += f"<pre>{escape(show_value(f.get(f'{side}_value')))}</pre>"
                row.append(f"<td>{cell}</td>")
            out.append("<tr>" + "".join(row) + "</tr>")
        out.append("</table>")
    out.append("</div>")
    return out


def _details(report: DivergenceReport, grouped: dict[str, list]) -> list[str]:
    out = ["<h2>Details</h2>"]
    if not report.summary.get("values_shown"):
        out.append(
            '<p class="note">Conversation content is shown as digests (<code>sha256:</code> and'
            " 16 hex digits): equal digests mean equal values. Run the check with"
            " <code>--show-values</code> to see the values.</p>"
        )
    listed = 0
    for n, (thread_id, items) in enumerate(grouped.items()):
        if listed >= MAX_LISTED:
            rest = len(report.divergences) - listed
            out.append(f'<p class="note">... and {rest} more divergences (see the JSON report).</p>')
            break
        opened = " open" if n < 30 else ""
        out.append(
            f'<details class="thread" id="t{n}"{opened}><summary>thread'
            f' <span class="mono">{escape(thread_id)}</span> ({len(items)})</summary><div>'
        )
        for entry in collapsed(items)[: MAX_LISTED - listed]:
            out += _divergence(entry)
            listed += entry.count
        out.append("</div></details>")
    return out


def render_html(report: DivergenceReport) -> str:
    grouped = by_thread(report)
    body = ["<main>", "<h1>dualsaver check report</h1>"]
    body += _header(report) + _meta(report) + _counts(report)
    if report.clean:
        body.append('<p class="ok">Every compared checkpoint, its metadata and its pending'
                    " writes are identical in both stores.</p>")
    else:
        body.append(f'<p class="next" id="next">{escape(NEXT_STEP)}</p>')
        body += _threads(report, grouped) + _details(report, grouped)
    body.append(
        "<footer>Generated by dualsaver check. The same data as the JSON report;"
        " this page loads nothing from the network.</footer></main>"
    )
    title = f"dualsaver check: safe to switch reads: {verdict(report)}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # No network: forbid every fetch, allow only the inline style.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"
            " style-src 'unsafe-inline'\">",
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            *body,
            "</body></html>",
        ]
    )
