"""`dualsaver status`: phase and origin, stores, journal, last backfill and check, over real stores."""

from __future__ import annotations

import json
import time

from dualsaver.control import evidence as migration_status
from dualsaver.migrate import BackfillResult
from dualsaver.migrate.progress import BackfillState
from dualsaver.checker.findings import DivergenceReport
from dualsaver.embedded import free_port
from dualsaver.control.journal import Journal, JournalEntry
from dualsaver.control.phase import Phase
from dualsaver.control.record import open_control_store
from dualsaver.control.settings import Settings
from dualsaver.stores import open_saver
from tests.ops_support import cli_env, put_marker, run_cli


def _settings_file(tmp_path, *, old, new, record=None, journal=None, status_file=None) -> str:
    lines = ["[migration]"]
    if journal:
        lines.append(f'journal = "{journal}"')
    if status_file:
        lines.append(f'status_file = "{status_file}"')
    lines += ["[stores]", f'old = "{old}"', 'new = "${TEST_NEW_URL}"']
    if record:
        lines += ["[phase_record]", 'url = "${TEST_RECORD_URL}"', "poll_interval = 0.5"]
    path = tmp_path / "dualsaver.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _journal_with(path, entries: int) -> None:
    journal = Journal(path)
    for i in range(entries):
        journal.record(JournalEntry("backfill", "new", "put", f"t{i % 2}", "", f"c{i}", None, "TimeoutError: slow"))
    journal.close()


def test_status_shows_phase_stores_journal_backfill_and_check(tmp_path, pg_url, redis_url):
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with open_saver(old_url) as old:
        put_marker(old, "t1", "old")
    _journal_with(tmp_path / "journal.sqlite", 3)
    config = _settings_file(tmp_path, old=old_url, new=pg_url, record=redis_url, journal=tmp_path / "journal.sqlite")
    with open_control_store(redis_url) as record:
        record.set_phase(Phase.BACKFILL, expected_version=0, by="ana", reason="go")
        record.heartbeat("replica-a", Phase.BACKFILL, interval=30)
    settings = Settings(control_url=redis_url)
    backfilled = BackfillResult(threads=5, checkpoints=12, finished_at=time.time())
    migration_status.record_backfill(backfilled, settings=settings)
    report = DivergenceReport(clean=True, divergences=[], summary={"duration_seconds": 0.1, "threads_compared": 5})
    migration_status.record_check(report, settings=settings)

    env = cli_env(TEST_NEW_URL=pg_url, TEST_RECORD_URL=redis_url)
    done = run_cli("status", "--config", config, "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["phase"]["phase"] == "backfill" and doc["phase"]["origin"].startswith("phase record redis://")
    assert doc["record"]["reachable"] and doc["record"]["replicas_live"] == 1
    assert doc["stores"]["old"]["reachable"] and doc["stores"]["old"]["detail"] == "checkpoint tables present"
    assert doc["stores"]["new"]["reachable"] and "PostgreSQL" in doc["stores"]["new"]["detail"]
    assert ":***@" in doc["stores"]["new"]["url"]
    assert (doc["journal"]["depth"], doc["journal"]["threads"]) == (3, 2)
    assert (doc["backfill"]["ok"], doc["backfill"]["threads"], doc["backfill"]["checkpoints"]) == (True, 5, 12)
    assert doc["check"]["clean"] and doc["check"]["age_seconds"] >= 0
    assert doc["healthy"] is True

    text = run_cli("status", "--config", config, cwd=tmp_path, env=env)
    assert text.returncode == 0
    for fragment in (
        "phase:    backfill  (from phase record",
        "1 live replica(s)",
        "old:      sqlite:///",
        "3 entries waiting in 2 thread(s); run `dualsaver repair`",
        "backfill: complete; 5 thread(s) copied, 12 checkpoint(s) added",
        "check:    CLEAN; 5 thread(s) compared",
    ):
        assert fragment in text.stdout, text.stdout


def test_status_says_which_store_is_unreachable(tmp_path):
    dead_pg = f"postgresql://app:pg-secret-1@127.0.0.1:{free_port()}/app"
    dead_record = f"redis://:rec-secret-2@127.0.0.1:{free_port()}/0"
    config = _settings_file(tmp_path, old=f"sqlite:///{tmp_path / 'missing.sqlite'}", new=dead_pg, record=dead_record)
    env = cli_env(TEST_NEW_URL=dead_pg, TEST_RECORD_URL=dead_record)
    done = run_cli("status", "--config", config, "--json", cwd=tmp_path, env=env)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["healthy"] is False and doc["phase"]["phase"] is None
    assert "unreachable" in doc["phase"]["origin"]
    assert doc["record"]["reachable"] is False
    assert doc["stores"]["old"]["reachable"] is False and "no such file" in doc["stores"]["old"]["detail"]
    assert doc["stores"]["new"]["reachable"] is False
    assert doc["stores"]["new"]["url"] == f"postgresql://app:***@127.0.0.1:{dead_pg.rsplit(':', 1)[1]}"
    everything = done.stdout + done.stderr
    assert "pg-secret-1" not in everything and "rec-secret-2" not in everything
    text = run_cli("status", "--config", config, cwd=tmp_path, env=env)
    assert "UNREACHABLE" in text.stdout and text.returncode == 1


def test_status_without_a_record_uses_the_local_status_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DUALSAVER_PHASE_RECORD", raising=False)
    status_file = tmp_path / "status.json"
    settings = Settings(status_file=str(status_file))
    failed = BackfillResult(threads=4, failed=1, finished_at=time.time())
    assert migration_status.record_backfill(failed, settings=settings)
    state = BackfillState(tmp_path / "bf.sqlite", old="sqlite:///a", new="postgresql://u:pw-3@h/db", shard=None)
    state.mark_done("t1", 2, 0)
    state.mark_done("t2", 3, 1)
    state.close()  # not finished: a backfill that is running, or was interrupted

    config = _settings_file(tmp_path, old="memory://", new="memory://", status_file=status_file)
    env = cli_env(TEST_NEW_URL="memory://", DUALSAVER_PHASE="read-switch")
    done = run_cli("status", "--config", config, "--backfill-state", str(tmp_path / "bf.sqlite"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "phase:    read-switch  (from environment (DUALSAVER_PHASE))" in done.stdout
    assert "backfill: 1 thread(s) FAILED" in done.stdout
    assert "running (or interrupted): 2 thread(s) done" in done.stdout
    assert "check:    none recorded" in done.stdout
    assert f"outcomes kept in: file {status_file}" in done.stdout
    assert "journal:  .dualsaver/journal.sqlite: no journal yet" in done.stdout
    assert "pw-3" not in done.stdout


def test_backfill_and_check_commands_record_their_outcome(tmp_path, pg_url):
    """Needs the one-line `record_backfill` / `record_check` calls in the two commands."""
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with open_saver(old_url) as old:
        for t in ("a", "b"):
            put_marker(old, t, "old")
    env = cli_env(DUALSAVER_STATUS=str(tmp_path / "status.json"))
    common = ["--old", old_url, "--new", pg_url]
    done = run_cli("backfill", *common, "--no-progress", "--state", str(tmp_path / "bf.sqlite"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    done = run_cli("check", *common, "--quiet", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    store = migration_status.LocalStatusFile(tmp_path / "status.json")
    backfilled, checked = store.get_status("backfill"), store.get_status("check")
    assert backfilled is not None and backfilled["threads"] == 2 and backfilled["ok"]
    assert checked is not None and checked["clean"] and checked["started_at"] >= backfilled["finished_at"]


def test_a_journal_files_backlog_read_only_agrees_with_its_entries(tmp_path):
    """Status reads the journal through `read_backlog` (read only, nothing created); the control
    store's journal is summed by `Backlog.of` over its entries: both count alike."""
    from dualsaver.control.journal import Backlog, read_backlog

    path = tmp_path / "journal.sqlite"
    assert read_backlog(path) is None and not path.exists()
    _journal_with(path, 3)
    journal = Journal(path)
    journal.record(JournalEntry("backfill", "new", "put", "t7", "", "c9", None, "LossyValue: NaN [rule non-finite; x]"))
    journal.mark_repaired([1])
    pending = list(journal.pending())
    journal.close()
    read, summed = read_backlog(path), Backlog.of(pending)
    assert read is not None
    assert (read.depth, read.threads, read.lossy) == (summed.depth, summed.threads, summed.lossy) == (
        3, 3, [("t7", "LossyValue: NaN [rule non-finite; x]")])
    assert summed.new == 3


def test_a_store_backfill_job_counts_namespaces_a_checkpoint_one_threads():
    from dualsaver.cli.status import _running_lines, _shard_line, shard_view

    now = time.time()
    job = {"shard": "all", "runner": "r", "started_at": now - 10, "updated_at": now, "threads_done": 5, "total": 9}
    items = shard_view({**job, "old": "items:SqliteStore", "new": "items:PostgresStore"}, now)
    checkpoints = shard_view({**job, "old": "sqlite:///a", "new": "postgresql://b"}, now)
    assert "5 namespace(s) done, 4 left, 0.5 namespace(s)/s" in _shard_line(items)
    assert "5 thread(s) done, 4 left, 0.5 thread(s)/s" in _shard_line(checkpoints)
    running = {"running": True, "threads_done": 5, "started_at": now - 10, "shard": "all", "new": "items:x"}
    assert "5 namespace(s) done" in _running_lines([{**running, "old": "items:y"}])[0]
    assert "5 thread(s) done" in _running_lines([{**running, "old": "sqlite:///a"}])[0]
