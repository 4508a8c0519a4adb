"""The reports: JSON for machines, Markdown and a self-contained HTML page for people; the page
is opened in a real headless Chromium and its rendered verdict read back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from dualsaver.checker.findings import Divergence, DivergenceReport, KINDS
from dualsaver.report import to_html, to_json, to_markdown, write_reports

HOSTILE = '<script>alert("x")</script>&'


def sample(clean: bool = False, values: bool = False) -> DivergenceReport:
    divergences = [] if clean else [
        Divergence("missing_in_new", "thread-1", "", "cp-1", {"present_in": "old", "fields": []}),
        Divergence(
            "checkpoint_mismatch",
            HOSTILE,
            "review:abc",
            "cp-2",
            {
                "fields": [
                    {
                        "field": "channel_values.messages",
                        "old": "sha256:1111111111111111",
                        "new": "sha256:2222222222222222",
                        **({"old_value": [HOSTILE], "new_value": ["bye"]} if values else {}),
                    },
                    {"field": "parent_checkpoint_id", "old": "cp-0", "new": None},
                ]
            },
        ),
        Divergence(
            "writes_mismatch",
            "thread-1",
            "",
            "cp-3",
            {
                "fields": [
                    {
                        "field": "writes[0]",
                        "old": {"task_id": "t", "task_path": "p", "idx": 0, "channel": "c",
                                "value": "sha256:3333333333333333"},
                        "new": None,
                    }
                ],
                "difference": "content",
                "compared": "exact",
                "count": {"old": 1, "new": 0},
            },
        ),
        Divergence("unreadable", "thread-2", "", "cp-4",
                   {"side": "new", "fields": [{"field": "row", "old": "readable",
                                               "new": "ValueError: MAC check failed"}]}),
    ]
    counts = dict.fromkeys(KINDS, 0)
    for d in divergences:
        counts[d.kind] += 1
    summary = {
        "threads_compared": 12, "checkpoints_compared": 340, "checkpoints_old": 340,
        "checkpoints_new": 339, "writes_old": 800, "writes_new": 799,
        "divergences": len(divergences), "counts": counts,
        "affected_threads": len({d.thread_id for d in divergences}),
        "duration_seconds": 1.5, "finished_at": "2026-11-21T12:00:00+00:00",
        "stores": {"old": "sqlite:///app.sqlite", "new": "postgresql://app:***@db/app"},
        "exact": {"old": True, "new": True}, "shard": None, "thread_filter": None,
        "recheck": {"enabled": True, "rounds": 2, "suspect_threads": 4, "cleared_threads": 1},
        "values_shown": values, "warnings": [],
    }
    return DivergenceReport(clean=clean, divergences=divergences, summary=summary)


def test_json_round_trips_and_has_the_contract_keys():
    report = sample()
    data = json.loads(to_json(report))
    assert {"clean", "summary", "divergences"} <= data.keys()
    assert data["divergences"][1]["detail"]["fields"][0]["field"] == "channel_values.messages"
    again = DivergenceReport.from_json(to_json(report))
    assert again.to_dict() == report.to_dict()


def test_markdown_has_verdict_counts_threads_and_fields():
    md = to_markdown(sample())
    assert "**Safe to switch reads: no**" in md
    assert "| missing in new | 1 |" in md and "| metadata mismatch | 0 |" in md
    assert "channel\\_values.messages" in md and "sha256:1111111111111111" in md
    assert "<script>" not in md  # escaped, never raw HTML
    assert "Safe to switch reads: yes" in to_markdown(sample(clean=True))


def test_html_escapes_store_content_and_loads_nothing():
    page = to_html(sample(values=True))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "default-src 'none'" in page  # the page may fetch nothing at all
    plain = to_html(sample())
    assert "sha256:1111111111111111" in plain and "--show-values" in plain


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run must apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
        *extra, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("clean", [False, True], ids=["divergent", "clean"])
def test_html_report_in_a_real_headless_browser(tmp_path, clean):
    report = sample(clean=clean, values=True)
    html_path = tmp_path / "report.html"
    write_reports(report, html_path=html_path)
    url = html_path.as_uri()

    dom = _run_chromium(tmp_path, url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    verdict = re.search(r'<div class="big">(.*?)</div>', rendered)
    assert verdict and unescape(verdict.group(1)) == f"Safe to switch reads: {'yes' if clean else 'no'}"
    # the hostile thread id stayed text: no script element was created from it
    assert "<script>" not in rendered
    if not clean:
        assert "&lt;script&gt;" in rendered
        assert 'id="threads"' in rendered and "thread-2" in rendered
        assert "channel_values.messages" in rendered

    shot = tmp_path / "report.png"
    done = _run_chromium(tmp_path, url, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    keep = os.environ.get("DUALSAVER_SCREENSHOTS")  # to look at the page by eye
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / f"report-{'clean' if clean else 'divergent'}.png")
