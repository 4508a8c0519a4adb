"""What the commands say, as a user reads it: totals that add up, the next step named, a thread
missing whole as one line, quiet third-party loggers (issue 19, "misleading output")."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dualsaver(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DUALSAVER_")}
    full.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "dualsaver.cli", *argv], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """A directory holding old.sqlite with 12 conversations of the demo's agent."""
    where = tmp_path_factory.mktemp("seeded")
    made = dualsaver("seed", "--old", "sqlite:///old.sqlite", "--conversations", "12", "--turns", "2", cwd=where)
    assert made.returncode == 0, made.stderr
    return where


def copy_of(seeded: Path, tmp_path: Path) -> Path:
    (tmp_path / "old.sqlite").write_bytes((seeded / "old.sqlite").read_bytes())
    return tmp_path


def checkpoints_in(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]


@pytest.mark.slow
def test_status_after_every_shard_finished_says_complete(seeded, tmp_path):
    work = copy_of(seeded, tmp_path)
    for shard in ("0/2", "1/2"):
        done = dualsaver("backfill", "--old", "sqlite:///old.sqlite", "--new", "sqlite:///new.sqlite",
                         "--shard", shard, cwd=work)
        assert done.returncode == 0, done.stderr
    status = dualsaver("status", "--json", cwd=work, DUALSAVER_OLD_URL="sqlite:///old.sqlite",
                       DUALSAVER_NEW_URL="sqlite:///new.sqlite")
    backfill = json.loads(status.stdout)["backfill"]
    assert backfill["ok"] and backfill["full"] and backfill["threads"] == 12 and backfill["shards"] == "2 of 2"
    text = dualsaver("status", cwd=work).stdout
    assert re.search(r"backfill: complete; 12 thread\(s\) copied, \d+ checkpoint\(s\) added by 2 of 2 shards", text)


def test_status_after_one_shard_of_two_says_partial(seeded, tmp_path):
    work = copy_of(seeded, tmp_path)
    dualsaver("backfill", "--old", "sqlite:///old.sqlite", "--new", "sqlite:///new.sqlite", "--shard", "1/2", cwd=work)
    text = dualsaver("status", cwd=work).stdout
    assert re.search(r"backfill: partial; \d+ thread\(s\) copied, \d+ checkpoint\(s\) added by 1 of 2 shards", text)


@pytest.mark.slow
def test_check_totals_next_step_and_one_row_for_a_thread_missing_whole(seeded, tmp_path):
    work = copy_of(seeded, tmp_path)
    assert dualsaver("backfill", "--old", "sqlite:///old.sqlite", "--new", "sqlite:///new.sqlite", cwd=work).returncode == 0
    total = checkpoints_in(work / "old.sqlite")
    clean = dualsaver("check", "--old", "sqlite:///old.sqlite", "--new", "sqlite:///new.sqlite", cwd=work)
    assert clean.returncode == 0
    last = clean.stderr.strip().splitlines()[-1]
    assert last.startswith(f"check: 12 thread(s), {total} checkpoint(s) compared, 0 divergent thread(s)")
    assert last.endswith("comparison is exact")
    assert "next:" not in clean.stdout

    import sqlite3

    with sqlite3.connect(work / "new.sqlite") as conn:  # a thread lost whole from new
        lost = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 'customer-003'").fetchone()[0]
        conn.execute("DELETE FROM checkpoints WHERE thread_id = 'customer-003'")
        conn.execute("DELETE FROM writes WHERE thread_id = 'customer-003'")
    assert lost > 1
    found = dualsaver("check", "--old", "sqlite:///old.sqlite", "--new", "sqlite:///new.sqlite",
                      "--report", "r.json", "--markdown", "r.md", "--html", "r.html", cwd=work)
    assert found.returncode == 1
    assert "next: dualsaver repair --report r.json, then dualsaver check again" in found.stdout
    report = json.loads((work / "r.json").read_text())
    assert len(report["divergences"]) == lost  # the JSON keeps every checkpoint
    markdown = (work / "r.md").read_text()
    assert len(re.findall(r"^### missing in new: thread `customer-003`", markdown, flags=re.M)) == 1
    assert f"{lost} checkpoints, " in markdown
    assert "dualsaver repair --report" in markdown
    html = (work / "r.html").read_text()
    assert html.count("customer-003") < lost and f"{lost} checkpoints, " in html and 'id="next"' in html
    repaired = dualsaver("repair", "--old", "sqlite:///old.sqlite", "--new", "sqlite:///new.sqlite",
                         "--report", "r.json", cwd=work)
    assert repaired.returncode == 0, repaired.stderr


@pytest.mark.parametrize("name", ["langgraph.checkpoint.redis", "redisvl.index.index", "langgraph.store.redis"])
def test_third_party_info_lines_stay_off_stderr_unless_debugging(name):
    from dualsaver.observability.logs import configure_logging

    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    try:
        logging.getLogger(name).info("Index already exists, not overwriting.")
        logging.getLogger(name).warning("something to see")
        logging.getLogger("dualsaver.cli").info("ours")
        lines = stream.getvalue().splitlines()
        assert not any("Index already exists" in line for line in lines)
        assert any("something to see" in line for line in lines) and any("ours" in line for line in lines)
        configure_logging(fmt="json", level="debug", stream=stream)
        logging.getLogger(name).info("Index already exists, debug")
        assert "Index already exists, debug" in stream.getvalue()
    finally:
        configure_logging(fmt="json", level="warning", stream=io.StringIO())
