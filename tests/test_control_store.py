"""The control store is all a fleet shares: jobs run from directories that share nothing
(a fresh working directory each, as pods whose disks vanish) and still resume one another,
satisfy the read-switch guard together, and repair one journal.

Every store is real: SQLite or PostgreSQL as old, PostgreSQL as new, Redis or PostgreSQL as
the control store. Every job is the real `dualsaver` command in its own process.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dualsaver import DualSaver, Phase
from dualsaver.control.record import open_control_store
from dualsaver.demo.app import build_support_agent, say
from dualsaver.embedded import EmbeddedRedis
from dualsaver.stores import open_saver
from tests.backfill_support import normalize, run_threads, snapshot_postgres, snapshot_sqlite
from tests.faulty import Faulty
from tests.ops_support import REPO, cli_env, eventually, run_cli

pytestmark = pytest.mark.slow


def _pod(tmp_path: Path, name: str) -> Path:
    """A working directory of its own: nothing in it survives from another job."""
    path = tmp_path / name
    path.mkdir()
    return path


def _history(tmp_path: Path, threads: int) -> tuple[str, dict]:
    """An old SQLite store holding real graph history; its URL and an independent snapshot."""
    path = tmp_path / "old.sqlite"
    with open_saver(f"sqlite:///{path}") as old:
        run_threads(old, [f"t{i:03d}" for i in range(threads)], turns=2)
        return f"sqlite:///{path}", normalize(snapshot_sqlite(str(path), old.serde))


def _serde():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer()


def test_a_killed_shard_resumes_from_another_directory(tmp_path, pg_url, redis_url) -> None:
    old_url, source = _history(tmp_path, 24)
    env = cli_env(DUALSAVER_CONTROL_URL=redis_url)
    shard0 = ["backfill", "--old", old_url, "--new", pg_url, "--shard", "0/2", "--no-progress"]

    # Slowed so that it is surely killed half-way; killed once the control store shows progress.
    first = subprocess.Popen(
        [sys.executable, "-m", "dualsaver.cli", *shard0, "--max-rate", "40"],
        cwd=_pod(tmp_path, "pod-1"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    with open_control_store(redis_url) as control:
        def some_threads_done() -> bool:
            assert first.poll() is None, first.communicate()[1]
            return any(job.get("threads_done", 0) >= 2 for job in control.jobs())

        eventually(some_threads_done, "the first run records finished threads", timeout=120)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)

    again = run_cli(*shard0, "--json", cwd=_pod(tmp_path, "pod-2"), env=env)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["threads_resumed"] >= 2, resumed  # it had no local progress file: the control store's

    other = run_cli("backfill", "--old", old_url, "--new", pg_url, "--shard", "1/2", "--no-progress",
                    cwd=_pod(tmp_path, "pod-3"), env=env)
    assert other.returncode == 0, other.stderr
    assert normalize(snapshot_postgres(pg_url, _serde())) == source

    status = run_cli("status", "--old", old_url, "--new", pg_url, "--json", cwd=_pod(tmp_path, "pod-4"), env=env)
    shards = {s["shard"]: s for s in json.loads(status.stdout)["record"]["shards"]}
    assert {k: v["state"] for k, v in shards.items()} == {"0/2": "done", "1/2": "done"}
    assert shards["0/2"]["threads_done"] == resumed["threads"] + resumed["threads_resumed"]
    assert shards["0/2"]["threads_done"] + shards["1/2"]["threads_done"] == 24


def test_the_read_switch_guard_reads_the_fleets_evidence(tmp_path, pg_url_factory, redis_url) -> None:
    old_url, _ = _history(tmp_path, 6)
    new_url, elsewhere_url = pg_url_factory(), pg_url_factory()
    env = cli_env(DUALSAVER_CONTROL_URL=redis_url)
    pods = iter(_pod(tmp_path, f"pod-{i}") for i in range(20))

    def dualsaver(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=next(pods), env=env)

    def switch() -> subprocess.CompletedProcess:
        return dualsaver("phase", "set", "read-switch", "--reason", "test")

    for phase in ("shadow-write", "backfill"):
        assert dualsaver("phase", "set", phase, "--reason", "test").returncode == 0
    done = dualsaver("backfill", "--old", old_url, "--new", new_url, "--no-progress")
    assert done.returncode == 0, done.stderr

    # (a) a whole, clean check of another pair of stores (a typo in --new) does not count.
    copy = run_cli("backfill", "--old", old_url, "--new", elsewhere_url, "--no-progress", cwd=next(pods), env=cli_env())
    assert copy.returncode == 0, copy.stderr
    wrong = dualsaver("check", "--old", old_url, "--new", elsewhere_url, "--quiet")
    assert wrong.returncode == 0, wrong.stderr
    refused = switch()
    assert refused.returncode == 1 and "(a)" in refused.stderr, refused.stderr

    # (b) a sharded check counts once every shard is in, each run from its own directory.
    half = dualsaver("check", "--old", old_url, "--new", new_url, "--shard", "0/2", "--quiet")
    assert half.returncode == 0, half.stderr
    refused = switch()
    assert refused.returncode == 1 and "(b)" in refused.stderr and "1 of 2" in refused.stderr, refused.stderr
    rest = dualsaver("check", "--old", old_url, "--new", new_url, "--shard", "1/2", "--quiet")
    assert rest.returncode == 0, rest.stderr

    # (d) a replica's secondary missed a write after the check: its journal entry, in the
    # control store, holds the switch until a repair from anywhere settles it.
    with open_saver(old_url) as old, open_saver(new_url) as healthy_new:
        new = Faulty(healthy_new)
        new.mode = "raise"
        with DualSaver(old, new, Phase.BACKFILL, journal=tmp_path / "replica-spool.sqlite",
                       control=redis_url, circuit_cool_down=None) as saver:
            say(build_support_agent(saver), "late-thread", "Where is my order?")
            missed = saver.secondary_failures.total()
    assert missed > 0
    refused = switch()
    assert refused.returncode == 1 and f"(d) {missed} journal" in refused.stderr, refused.stderr

    repaired = dualsaver("repair", "--old", old_url, "--new", new_url, "--journal", "--phase", "backfill")
    assert repaired.returncode == 0, repaired.stderr + repaired.stdout
    done = switch()
    assert done.returncode == 0, done.stderr
    with open_saver(new_url) as new:
        messages = build_support_agent(new).get_state({"configurable": {"thread_id": "late-thread"}}).values["messages"]
        assert len(messages) == 2


def test_replicas_starting_at_once_journal_to_the_control_store(tmp_path, pg_url_factory) -> None:
    replicas = 3
    old_url, new_url, control_url = pg_url_factory(), pg_url_factory(), pg_url_factory()  # all fresh
    env = cli_env(CTRL_OLD_URL=old_url, CTRL_NEW_URL=new_url, DUALSAVER_CONTROL_URL=control_url,
                  CTRL_START_AT=str(time.time() + 3), CTRL_TURNS="2")
    env["PYTHONPATH"] = str(REPO)
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.control_replica", str(i)], cwd=_pod(tmp_path, f"replica-{i}"),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(replicas)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * replicas, [err[-3000:] for _, err in outputs]
    ran = [json.loads(re.search(r'\{"threads".*\}', out)[0]) for out, _ in outputs]  # among the log lines
    assert all(r["missed"] > 0 for r in ran)

    with open_control_store(control_url) as control:
        pending = control.journal_pending()
    # Every replica's misses reached the fleet's journal, from pods that are gone.
    assert len(pending) == sum(r["missed"] for r in ran)
    assert {e.thread_id for e in pending} == {t for r in ran for t in r["threads"]}

    # An operator who knows only the control store's URL repairs them all, then checks.
    operator = cli_env(DUALSAVER_CONTROL_URL=control_url)
    stores = ("--old", old_url, "--new", new_url)
    repaired = run_cli("repair", *stores, "--journal", "--phase", "backfill", cwd=_pod(tmp_path, "operator"), env=operator)
    assert repaired.returncode == 0, repaired.stderr + repaired.stdout
    checked = run_cli("check", *stores, "--quiet", cwd=tmp_path / "operator", env=operator)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with open_control_store(control_url) as control:
        assert control.journal_pending() == []


def test_no_journal_entry_is_lost_while_the_control_store_is_down(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    control = EmbeddedRedis(appendonly=True, data_dir=tmp_path / "control")
    with control, open_saver(f"sqlite:///{tmp_path / 'old.sqlite'}") as old, \
            open_saver(f"sqlite:///{tmp_path / 'new.sqlite'}") as healthy_new:
        new = Faulty(healthy_new)
        new.mode = "raise"
        with DualSaver(old, new, Phase.BACKFILL, control=control.url, circuit_cool_down=None) as saver:
            app = build_support_agent(saver)
            say(app, "before", "Where is my order?")
            control.stop()
            say(app, "during", "Where is my order?")  # served: the entries wait in the spool
            assert saver.recorder.unshipped() > 0
            control.start()
            say(app, "after", "Where is my order?")
            missed = saver.secondary_failures.total()
        with open_control_store(control.url) as record:
            pending = record.journal_pending()
    assert len(pending) == missed
    assert {e.thread_id for e in pending} == {"before", "during", "after"}


def test_a_heartbeat_reading_the_journal_while_it_closes_never_fails(tmp_path, redis_url) -> None:
    """The phase poller reads the recorder's unshipped entries for its heartbeat on its own
    thread; a pair closing its journal meanwhile (a server shutting down) must not make that
    read fail (it was logged as `phase_record_unreachable`, a record that had not failed)."""
    import threading

    from dualsaver.saver._recorder import Recorder

    for attempt in range(60):
        recorder = Recorder(tmp_path / f"j{attempt}.sqlite", control=redis_url)
        assert recorder.journal is not None  # opened, as after a first entry
        failures: list[BaseException] = []
        stop = threading.Event()

        def poll(recorder: Recorder = recorder, stop: threading.Event = stop, failures: list = failures) -> None:
            while not stop.is_set():
                try:
                    recorder.unshipped()
                except BaseException as exc:  # what the poller would have taken for an outage
                    failures.append(exc)
                    return

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.002)
        recorder.close()
        stop.set()
        poller.join()
        assert failures == [], (attempt, failures)
        assert recorder.unshipped() == 0


def test_a_replicas_heartbeat_counts_the_unshipped_entries_of_every_pair_following_its_source(tmp_path) -> None:
    """A DualSaver and a DualStore share one phase source (one application, one phase), each
    with its own journal. While the control store is down, the saver's missed writes wait in
    its spool: the source's depth (what the heartbeat publishes, `dualsaver status` shows)
    counts them, though another store was built after the saver, and two pairs on one journal
    file count it once; once shipped they are no longer counted."""
    from langgraph.store.memory import InMemoryStore

    from dualsaver import DualStore
    from dualsaver.control.sources import PollingPhaseSource

    control = EmbeddedRedis(appendonly=True, data_dir=tmp_path / "control")
    with control, open_saver(f"sqlite:///{tmp_path / 'old.sqlite'}") as old, \
            open_saver(f"sqlite:///{tmp_path / 'new.sqlite'}") as healthy_new:
        with open_control_store(control.url) as record:
            record.set_phase(Phase.BACKFILL, expected_version=0, by="test")
        source = PollingPhaseSource(open_control_store(control.url), start=False)
        new = Faulty(healthy_new)
        new.mode = "raise"
        saver = DualSaver(old, new, phase=source, control=control.url, journal=tmp_path / "saver.sqlite",
                          circuit_cool_down=None)
        twin = DualStore(InMemoryStore(), InMemoryStore(), phase=source, control=control.url,
                         journal=tmp_path / "saver.sqlite")  # the saver's journal file
        store = DualStore(InMemoryStore(), InMemoryStore(), phase=source, control=control.url,
                          journal=tmp_path / "store.sqlite")  # built last, a file of its own
        try:
            control.stop()
            say(build_support_agent(saver), "t", "Where is my order?")
            held = saver.recorder.unshipped()
            assert held > 0 and store.recorder.unshipped() == 0
            assert twin.recorder.journal is not None  # opened on the saver's file: the same entries, counted once
            assert twin.recorder.unshipped() == held
            assert source.journal_depth() == held
            store.close()  # it stops counting (it held nothing)
            assert source.journal_depth() == held
            control.start()
            saver.close()  # ships what the file holds, then stops counting
            twin.close()
            assert source.journal_depth() == 0
            with open_control_store(control.url) as record:
                assert len(record.journal_pending()) == held  # shipped once, by one of the two
        finally:
            for pair in (saver, store, twin):
                pair.close()
            source.close()


def test_a_store_given_a_savers_phase_source_follows_the_fleet_after_the_saver_closes(tmp_path, monkeypatch) -> None:
    """One application, one phase: a DualStore given its DualSaver's phase source (as the
    Agent Server's store factory passes it) keeps following the fleet's record, and
    heartbeating, after the saver that made the source closes (a server closing its
    checkpointer before its store). The source stops when the last pair following it closes,
    and so does a source a pair leaves for a phase set at runtime."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    from dualsaver import DualStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DUALSAVER_PHASE", raising=False)
    control = EmbeddedRedis(data_dir=tmp_path / "control")
    with control:
        (tmp_path / "dualsaver.toml").write_text(f'[control]\nurl = "{control.url}"\npoll_interval = 0.05\n')
        monkeypatch.setenv("DUALSAVER_SETTINGS", str(tmp_path / "dualsaver.toml"))
        with open_control_store(control.url) as record:
            record.set_phase(Phase.BACKFILL, expected_version=0, by="test")
        saver = DualSaver.from_settings(InMemorySaver(), InMemorySaver())
        source = saver.phase_source
        store = DualStore(InMemoryStore(), InMemoryStore(), phase=source)
        try:
            assert store.phase is Phase.BACKFILL
            saver.close()
            with open_control_store(control.url) as record:
                record.set_phase(Phase.READ_SWITCH, expected_version=1, by="test")
                eventually(lambda: store.phase is Phase.READ_SWITCH, "the store follows the record", timeout=10)
                assert source.replica_id in {r.replica for r in record.replicas()}
            store.close()
            assert source._thread is None  # stopped with the last pair that followed it
            with open_control_store(control.url) as record:
                assert source.replica_id not in {r.replica for r in record.replicas()}
        finally:
            saver.close()
            store.close()

        runtime = DualSaver.from_settings(InMemorySaver(), InMemorySaver())
        polled = runtime.phase_source
        runtime.phase = "shadow-write"  # pinned: the source it made stops, and no longer counts its journal
        assert polled._thread is None and polled._journals == []
        runtime.close()


_KILLED_AFTER_A_MISS = """
import os, signal, sys
from dualsaver import DualSaver
from dualsaver.stores import open_saver
from tests.faulty import Faulty
from tests.graphs import build_agent, run_turn

old_url, new_url, control, journal = sys.argv[1:]
with open_saver(old_url) as o, open_saver(new_url) as n:
    old = Faulty(o)
    old.mode = "raise"
    saver = DualSaver(old, n, "read-switch", control=control, journal=journal, circuit_cool_down=None)
    run_turn(build_agent(saver), "t", "alpha")  # acknowledged; old, the secondary, misses its writes
    print(saver.secondary_failures.total(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # at once: no exit hook runs, and the pod's disk goes with it
"""


@pytest.mark.parametrize("control", ["postgres", "redis"])
def test_a_replica_killed_right_after_a_miss_has_shipped_its_entry(tmp_path, request, control) -> None:
    """Every write a store missed is in the control store when the call returns: a replica
    SIGKILLed at once leaves nothing behind in its spool (its disk would vanish with it).
    Before, entries waited up to 0.2 s to gather into a shipment, and all of this turn's
    were lost: a rollback to old could pass the guard with old lacking the turn."""
    from dualsaver.control.journal import Journal

    control_url = request.getfixturevalue("pg_url" if control == "postgres" else "redis_url")
    spool = tmp_path / "journal.sqlite"
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_A_MISS, f"sqlite:///{tmp_path / 'o.sqlite'}",
         f"sqlite:///{tmp_path / 'n.sqlite'}", control_url, str(spool)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    missed = int(done.stdout.split()[-1])
    assert missed > 0
    left = Journal(spool)
    try:
        assert left.depth() == 0  # nothing waited in the spool
    finally:
        left.close()
    with open_control_store(control_url) as record:
        shipped = [e for e in record.journal_pending() if e.thread_id == "t"]
    assert len(shipped) == missed and {e.store for e in shipped} == {"old"}
