"""`dualsaver demo` end to end, as a user runs it: the installed console script in a
subprocess, for every target (embedded PostgreSQL, embedded Redis, and the official LangGraph
Redis saver on an embedded Redis 8 with RedisJSON and RediSearch)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("dualsaver")
PHASES = ["shadow-write", "backfill", "read-switch", "decommission"]
# scheme://user:secret@ where the secret is anything but the redaction marker
PASSWORD_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:(?!\*\*\*@)[^/\s@]+@", re.I)


def dualsaver(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "dualsaver.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("new", ["postgres", "redis", "langgraph-redis"])
def test_demo_walks_every_phase_and_ends_clean(tmp_path: Path, new: str) -> None:
    workdir = tmp_path / "demo"
    args = ["demo", "--dir", str(workdir)] + (["--new", new] if new != "postgres" else [])
    run = dualsaver(*args)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]

    # the four phases, in order
    starts = [output.find(f"== phase {phase}") for phase in PHASES]
    assert -1 not in starts and starts == sorted(starts), output
    # the narration tells the story: library logs stay quiet unless something goes wrong
    assert "phase_changed" not in output and "secondary_write_failed" not in output
    # backfill and check before read-switch; the incident is found and repaired
    assert "copy is exact" in output
    assert re.search(r"check: safe to switch reads: no; found \d+ divergence\(s\): missing_in_new", output)
    assert "check after repair: safe to switch reads: yes" in output
    assert output.find("check after repair") < starts[PHASES.index("read-switch")]
    assert "secondary failures during the migration: 0" in output
    # the long-term store moves in the same phases, exactly (timestamps included), where the
    # target has a store; dualsaver's own Redis layout holds checkpoints only
    if new == "redis":
        assert "holds checkpoints only: the long-term store stays on SQLite" in output
        assert f"every conversation now lives in {new}" in output
    else:
        memories = re.search(r"old holds \d+ checkpoints and (\d+) memories", output)
        assert memories and int(memories.group(1)) > 0, output
        assert re.search(r"store: copied [1-9]\d* item\(s\)", output), output
        assert "long-term store: clean (0 divergence(s)" in output, output
        assert re.search(r"its memory, read from new: \d+ turns remembered", output), output
        assert f"every conversation and memory now lives in {new}" in output
        assert '"clean": true' in (workdir / "store-report.json").read_text()

    # the reports were written and tell the same story, without a password either
    reports = {name: (workdir / name).read_text() for name in ("report.json", "report.md", "report.html")}
    assert '"clean": true' in reports["report.json"]
    # the incident's divergent report is kept beside the clean one, with the next step
    incident = json.loads((workdir / "incident-report.json").read_text())
    assert not incident["clean"] and {d["kind"] for d in incident["divergences"]} == {"missing_in_new"}
    assert "dualsaver repair --report" in (workdir / "incident-report.md").read_text()
    reports.update({name: (workdir / name).read_text() for name in ("incident-report.md", "incident-report.html")})
    for text in [output, *reports.values()]:
        assert not PASSWORD_IN_URL.search(text), PASSWORD_IN_URL.search(text).group(0)
    if new == "postgres":  # the embedded server has a password: it is shown redacted
        assert re.search(r"postgresql://dualsaver:\*\*\*@127\.0\.0\.1:\d+/dualsaver_demo", output)

    # the demo stopped the server it started
    port = int(re.search(r"new: .* at \S+://\S*127\.0\.0\.1:(\d+)", output).group(1))
    assert not _port_open(port)


def test_help_names_the_workflow_and_the_examples() -> None:
    top = dualsaver("--help", timeout=60)
    assert top.returncode == 0
    for word in ("shadow-write", "backfill", "decommission", "demo"):
        assert word in top.stdout
    demo = dualsaver("demo", "--help", timeout=60)
    assert demo.returncode == 0
    assert "examples:" in demo.stdout and "dualsaver demo --new redis" in demo.stdout
    assert "every phase" in demo.stdout and "{postgres,redis,langgraph-redis}" in demo.stdout


def _module(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dualsaver.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_module_entry_point_matches_the_script(tmp_path: Path) -> None:
    run = _module("demo", "--help")
    assert run.returncode == 0 and "dualsaver demo --new redis" in run.stdout
    bad = _module("demo", "--conversations", "2", "--dir", str(tmp_path / "d"))
    assert bad.returncode != 0 and "at least 4" in bad.stderr and not (tmp_path / "d").exists()
