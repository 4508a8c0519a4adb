"""Phase control: the shared record, guarded transitions, the polling source, precedence,
canary routing. Real PostgreSQL and Redis records; the CLI runs as a real subprocess."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from dualsaver import DualSaver
from dualsaver.control import evidence as migration_status
from dualsaver.migrate import BackfillResult
from dualsaver.checker.findings import Divergence, DivergenceReport
from dualsaver.embedded import EmbeddedRedis
from dualsaver.control.phase import Evidence, Phase, TransitionError, guard_transition
from dualsaver.control.sources import StaticPhase, phase_source, resolve_phase
from dualsaver.control.record import ConcurrentChange, RecordUnavailable, open_control_store
from dualsaver.control.sources import PollingPhaseSource
from dualsaver.control.settings import Settings
from tests.ops_support import cli_env, eventually, json_lines, marker_of, put_marker, run_cli

# --------------------------------------------------------------------------- the guard


def expected_allowed(current: Phase, target: Phase, e: Evidence) -> bool:
    """The rules of design.md, restated independently of the implementation."""
    if target is current:
        return True
    if target.index > current.index:
        if target.index != current.index + 1:
            return False
        if target is Phase.READ_SWITCH:
            return (
                e.backfill_at is not None and e.backfill_ok and e.backfill_full
                and e.check_at is not None and e.check_at >= e.backfill_at
                and e.check_full and e.check_clean and e.unrepaired_new == 0
                and (e.reads_back_at is None or e.check_at >= e.reads_back_at)  # a check after any rollback
                # ... and after write-behind ended: a crash loses its queue unjournaled
                and (e.left_shadow_write_at is None or e.check_at >= e.left_shadow_write_at)
                and not e.check_writing_behind  # ... with no replica still writing behind as it started
            )
        if target is Phase.DECOMMISSION:  # old, about to be retired, holds the only copy of what new missed
            return e.unrepaired_new == 0
        return True
    if current is Phase.DECOMMISSION and not (
        e.reverse_backfill_at is not None and e.reverse_backfill_ok
        and (e.entered_at is None or e.reverse_backfill_at >= e.entered_at)
    ):
        return False
    # leaving a phase that reads new: old must have what it missed meanwhile
    return current not in (Phase.READ_SWITCH, Phase.DECOMMISSION) or e.unrepaired_old == 0


times = st.one_of(st.none(), st.integers(0, 5).map(float))
evidence = st.builds(
    Evidence,
    backfill_at=times, backfill_ok=st.booleans(), backfill_full=st.booleans(),
    reverse_backfill_at=times, reverse_backfill_ok=st.booleans(),
    check_at=times, check_clean=st.booleans(), check_full=st.booleans(),
    check_divergences=st.integers(0, 3), entered_at=times,
    unrepaired_new=st.integers(0, 2), unrepaired_old=st.integers(0, 2), reads_back_at=times,
    left_shadow_write_at=times, check_writing_behind=st.sampled_from([None, "1 live replica(s) ..."]),
)


@given(st.sampled_from(list(Phase)), st.sampled_from(list(Phase)), evidence)
def test_guard_allows_exactly_what_the_rules_allow(current, target, e):
    try:
        guard_transition(current, target, e)
        allowed = True
    except TransitionError as exc:
        allowed = False
        assert str(exc).startswith("cannot ")  # every refusal says what cannot happen, and why
    assert allowed == expected_allowed(current, target, e)


# --------------------------------------------------------------------------- the record


@pytest.fixture(params=["postgres", "redis"])
def record_url(request) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "redis_url")


def test_record_history_and_compare_and_set(record_url):
    with open_control_store(record_url) as record:
        assert record.read() is None and record.history() == []
        first = record.set_phase(Phase.BACKFILL, expected_version=0, by="ana", reason="go")
        assert (first.phase, first.version, first.changed_by) == (Phase.BACKFILL, 1, "ana")
        with pytest.raises(ConcurrentChange, match="changed meanwhile"):
            record.set_phase(Phase.READ_SWITCH, expected_version=0, by="bob")
        record.set_phase(Phase.READ_SWITCH, expected_version=1, by="bob", forced=True)
        state = record.read()
        assert (state.phase, state.version, state.changed_by, state.forced) == (Phase.READ_SWITCH, 2, "bob", True)
        steps = [(t.from_phase, t.to_phase, t.changed_by, t.forced) for t in record.history()]
        assert steps == [(None, "backfill", "ana", False), ("backfill", "read-switch", "bob", True)]


def test_racing_operators_exactly_one_wins(record_url):
    with open_control_store(record_url) as record:
        record.set_phase(Phase.SHADOW_WRITE, expected_version=0, by="init")
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def operator(i: int) -> None:
        with open_control_store(record_url) as mine:
            barrier.wait()
            try:
                mine.set_phase(Phase.BACKFILL, expected_version=1, by=f"op{i}")
                outcomes.append("won")
            except ConcurrentChange:
                outcomes.append("lost")

    threads = [threading.Thread(target=operator, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]
    with open_control_store(record_url) as record:
        assert record.read().version == 2 and len(record.history()) == 2


def test_migration_outcomes_are_kept_in_the_record(record_url):
    settings = Settings(control_url=record_url)
    result = BackfillResult(threads=4, checkpoints=9, finished_at=time.time())
    assert migration_status.record_backfill(result, settings=settings)
    with open_control_store(record_url) as record:
        kept = record.get_status(migration_status.BACKFILL)
    assert (kept["ok"], kept["threads"], kept["checkpoints"], kept["full"]) == (True, 4, 9, True)


# --------------------------------------------------------------------------- the CLI guards


def _backfill(failed: int = 0) -> BackfillResult:
    return BackfillResult(threads=3, checkpoints=7, failed=failed, finished_at=time.time())


def _check(divergences: int = 0, shard: str | None = None) -> DivergenceReport:
    found = [Divergence("missing_in_new", f"t{i}", "", f"c{i}", {}) for i in range(divergences)]
    summary = {"duration_seconds": 0.0, "shard": shard, "thread_filter": None, "counts": {"missing_in_new": divergences}}
    return DivergenceReport(clean=not found, divergences=found, summary=summary)


def test_refused_transitions_say_why_and_what_to_do(record_url, tmp_path):
    env = cli_env(DUALSAVER_CONTROL_URL=record_url)
    settings = Settings(control_url=record_url)

    def phase_set(target: str, *extra: str) -> tuple[int, str]:
        done = run_cli("phase", "set", target, *extra, cwd=tmp_path, env=env)
        return done.returncode, done.stdout + done.stderr

    def refused(target: str, *fragments: str) -> None:
        code, text = phase_set(target)
        assert code == 1, text
        assert "refused:" in text and "--force overrides" in text
        for fragment in fragments:
            assert fragment in text

    refused("decommission", "forward moves go one step at a time (next is backfill)")
    assert phase_set("backfill", "--reason", "shadow-write is clean")[0] == 0
    refused("read-switch", "no backfill has been recorded", "dualsaver backfill")
    migration_status.record_backfill(_backfill(failed=2), settings=settings)
    refused("read-switch", "is not complete (some threads failed)")
    migration_status.record_backfill(_backfill(), settings=settings)
    refused("read-switch", "no check has started since the last backfill finished", "dualsaver check")
    migration_status.record_check(_check(divergences=2), settings=settings)
    refused("read-switch", "found 2 divergence(s)", "dualsaver repair")
    migration_status.record_check(_check(shard="0/2"), settings=settings)
    refused("read-switch", "(b)", "cover only part of the store", "1 of 2 shards are in")
    migration_status.record_check(_check(), settings=settings)
    assert phase_set("read-switch")[0] == 0
    assert phase_set("decommission")[0] == 0
    refused("read-switch", "run a reverse backfill (new -> old) first")
    refused("shadow-write", "reverse backfill")
    migration_status.record_backfill(_backfill(), reverse=True, settings=settings)
    assert phase_set("read-switch", "--reason", "rollback")[0] == 0

    code, text = phase_set("sideways")
    assert code == 2 and "unknown phase 'sideways'" in text

    shown = run_cli("phase", "show", "--json", cwd=tmp_path, env=env)
    doc = json.loads(shown.stdout)
    assert doc["phase"] == "read-switch"
    assert [(t["from_phase"], t["to_phase"]) for t in doc["history"]] == [
        (None, "backfill"), ("backfill", "read-switch"), ("read-switch", "decommission"),
        ("decommission", "read-switch"),
    ]
    assert doc["history"][-1]["reason"] == "rollback" and doc["history"][-1]["changed_by"] == "tester@ci"


def test_force_overrides_a_guard_loudly_and_is_recorded(record_url, tmp_path):
    env = cli_env(DUALSAVER_CONTROL_URL=record_url, DUALSAVER_LOG_FORMAT="json")
    assert run_cli("phase", "set", "backfill", cwd=tmp_path, env=env).returncode == 0
    done = run_cli("phase", "set", "read-switch", "--force", "--reason", "checked by hand", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "WARNING: forcing backfill -> read-switch" in done.stderr
    forced = [e for e in json_lines(done.stderr) if e.get("event") == "phase_transition_forced"]
    assert len(forced) == 1 and forced[0]["level"] == "warning"
    assert "no backfill has been recorded" in forced[0]["overridden"]
    with open_control_store(record_url) as record:
        last = record.history()[-1]
        assert (last.to_phase, last.forced, last.reason) == ("read-switch", True, "checked by hand")


def test_no_record_configured_is_a_clear_error(tmp_path):
    done = run_cli("phase", "show", cwd=tmp_path)
    assert done.returncode == 2
    assert "no control store configured" in done.stderr and "--control" in done.stderr


def test_a_step_waits_for_replicas_still_on_the_previous_phase(redis_url, tmp_path):
    env = cli_env(DUALSAVER_CONTROL_URL=redis_url)
    assert run_cli("phase", "set", "backfill", cwd=tmp_path, env=env).returncode == 0
    with open_control_store(redis_url) as record:
        record.heartbeat("laggard:1", Phase.SHADOW_WRITE, interval=60)  # has not followed yet
        done = run_cli("phase", "set", "shadow-write", cwd=tmp_path, env=env)
        assert done.returncode == 1
        assert "1 live replica(s) have not yet followed" in done.stderr and "laggard:1" in done.stderr
        waited = run_cli("phase", "set", "backfill", "--wait", "0.5", cwd=tmp_path, env=env)
        assert waited.returncode == 4 and "laggard:1 (shadow-write)" in waited.stderr
        record.heartbeat("laggard:1", Phase.BACKFILL, interval=60)
        waited = run_cli("phase", "set", "backfill", "--wait", "30", cwd=tmp_path, env=env)
        assert waited.returncode == 0 and "1 live replica(s) report backfill" in waited.stdout


# --------------------------------------------------------------------------- the polling source


def test_polling_source_follows_the_record_and_reports_itself(record_url):
    with open_control_store(record_url) as writer:
        source = PollingPhaseSource(open_control_store(record_url), interval=0.05)
        try:
            assert source.current() is Phase.SHADOW_WRITE and "no phase set yet" in source.origin
            writer.set_phase(Phase.BACKFILL, expected_version=0, by="op")
            eventually(lambda: source.current() is Phase.BACKFILL, "the source follows the record")
            assert "version 1" in source.origin
            seen = eventually(
                lambda: [r for r in writer.replicas() if r.replica == source.replica_id and r.phase == "backfill"],
                "a heartbeat with the new phase",
            )
            assert seen[0].alive()
        finally:
            source.close()
        assert [r for r in writer.replicas() if r.replica == source.replica_id] == []


def test_a_replica_that_loses_the_record_keeps_its_phase_and_says_so_once(tmp_path):
    server = EmbeddedRedis(appendonly=True, data_dir=tmp_path / "redis", password="rec-pw").start()
    try:
        with open_control_store(server.url) as writer:
            writer.set_phase(Phase.BACKFILL, expected_version=0, by="op")
        with structlog.testing.capture_logs() as logs:
            source = PollingPhaseSource(open_control_store(server.url, timeout=1.0), interval=0.05)
            try:
                assert source.current() is Phase.BACKFILL
                server.stop()  # files kept: the same record comes back on restart
                eventually(lambda: not source.reachable, "the outage is noticed")
                for _ in range(3):
                    source.refresh()  # more failed polls: still one warning
                assert source.current() is Phase.BACKFILL
                assert "UNREACHABLE" in source.origin and "keeping the last known phase" in source.origin
                server.start()
                eventually(lambda: source.reachable, "the record is reachable again")
                with open_control_store(server.url) as writer:
                    writer.set_phase(Phase.READ_SWITCH, expected_version=1, by="op")
                eventually(lambda: source.current() is Phase.READ_SWITCH, "the source follows again")
            finally:
                source.close()
        warnings = [e for e in logs if e["event"] == "phase_record_unreachable"]
        assert len(warnings) == 1
        assert warnings[0]["keeping_phase"] == "backfill" and warnings[0]["log_level"] == "warning"
        assert "rec-pw" not in json.dumps(logs, default=str)
        assert len([e for e in logs if e["event"] == "phase_record_reachable_again"]) == 1
        changed = [e for e in logs if e["event"] == "phase_changed"]
        assert [(e["previous"], e["phase"]) for e in changed] == [("backfill", "read-switch")]
    finally:
        server.stop()


def test_a_replica_cannot_start_on_an_unreachable_record_without_a_fallback(tmp_path):
    server = EmbeddedRedis(password="rec-pw").start()
    url = server.url
    server.stop()
    with pytest.raises(RecordUnavailable) as err:
        PollingPhaseSource(open_control_store(url, timeout=1.0), interval=0.05, start=False)
    assert "no last known phase" in str(err.value) and "rec-pw" not in str(err.value)
    source = PollingPhaseSource(open_control_store(url, timeout=1.0), interval=0.05, start=False, fallback="read-switch")
    assert source.current() is Phase.READ_SWITCH and "UNREACHABLE" in source.origin
    source.close()


# --------------------------------------------------------------------------- precedence


def test_precedence_argument_environment_settings_record_default(monkeypatch, tmp_path, redis_url):
    monkeypatch.delenv("DUALSAVER_PHASE", raising=False)
    monkeypatch.delenv("DUALSAVER_SETTINGS", raising=False)
    monkeypatch.delenv("DUALSAVER_PHASE_RECORD", raising=False)
    with open_control_store(redis_url) as record:
        record.set_phase(Phase.BACKFILL, expected_version=0, by="op")
    follows = Settings(control_url=redis_url, path="fleet.toml")
    pinned = Settings(phase="read-switch", control_url=redis_url, path="pinned.toml")

    assert resolve_phase(None, settings=Settings()) == (Phase.SHADOW_WRITE, "default")
    phase, origin = resolve_phase(None, settings=follows)
    assert phase is Phase.BACKFILL and origin.startswith("phase record redis://")
    assert resolve_phase(None, settings=pinned) == (Phase.READ_SWITCH, "settings file (pinned.toml)")
    monkeypatch.setenv("DUALSAVER_PHASE", "decommission")
    assert resolve_phase(None, settings=pinned) == (Phase.DECOMMISSION, "environment (DUALSAVER_PHASE)")
    assert resolve_phase("shadow-write", settings=pinned) == (Phase.SHADOW_WRITE, "argument")
    mine = StaticPhase("backfill", "my source")
    assert phase_source(mine) is mine


def test_settings_file_through_the_environment(monkeypatch, tmp_path, redis_url):
    monkeypatch.delenv("DUALSAVER_PHASE", raising=False)
    path = tmp_path / "dualsaver.toml"
    path.write_text('[phase_record]\nurl = "${MY_RECORD}"\npoll_interval = 0.05\n')
    monkeypatch.setenv("MY_RECORD", redis_url)
    monkeypatch.setenv("DUALSAVER_SETTINGS", str(path))
    with open_control_store(redis_url) as record:
        record.set_phase(Phase.BACKFILL, expected_version=0, by="op")
    source = phase_source(None)
    try:
        assert isinstance(source, PollingPhaseSource) and source.interval == 0.05
        assert source.current() is Phase.BACKFILL
    finally:
        source.close()


def test_a_dual_saver_follows_the_record_between_operations(tmp_path, redis_url):
    from langgraph.checkpoint.memory import InMemorySaver

    old, new = InMemorySaver(), InMemorySaver()
    source = PollingPhaseSource(open_control_store(redis_url), interval=0.05)
    saver = DualSaver(old, new, phase=source, journal=tmp_path / "j.sqlite")
    try:
        put_marker(saver, "t1", "first")
        assert marker_of(old.get_tuple({"configurable": {"thread_id": "t1"}})) == "first"
        with open_control_store(redis_url) as record:
            for version, phase in enumerate(
                [Phase.SHADOW_WRITE, Phase.BACKFILL, Phase.READ_SWITCH, Phase.DECOMMISSION]
            ):
                record.set_phase(phase, expected_version=version, by="op")
        eventually(lambda: saver.phase is Phase.DECOMMISSION, "the saver follows the record")
        assert saver.phase_origin.startswith("phase record")
        put_marker(saver, "t2", "second")
        assert old.get_tuple({"configurable": {"thread_id": "t2"}}) is None  # decommission: old untouched
        assert marker_of(new.get_tuple({"configurable": {"thread_id": "t2"}})) == "second"
    finally:
        saver.close()
        source.close()


# --------------------------------------------------------------------------- canary reads


@pytest.fixture
def marked_stores(tmp_path):
    """Two real SQLite stores holding the same 400 threads, each marked with its store."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    stores = []
    for name in ("old", "new"):
        saver = SqliteSaver(sqlite3.connect(tmp_path / f"{name}.sqlite", check_same_thread=False))
        saver.setup()
        stores.append(saver)
    threads = [f"conversation-{i}" for i in range(400)]
    for t in threads:
        put_marker(stores[0], t, "old", checkpoint_id="1ef00000-0000-6000-8000-000000000001")
        put_marker(stores[1], t, "new", checkpoint_id="1ef00000-0000-6000-8000-000000000001")
    yield stores, threads
    for s in stores:
        s.conn.close()


def _readers_of_new(stores, threads, percent, tmp_path) -> set[str]:
    saver = DualSaver(*stores, "read-switch", canary_percent=percent, journal=tmp_path / "j.sqlite")
    try:
        answers = {t: marker_of(saver.get_tuple({"configurable": {"thread_id": t}})) for t in threads}
    finally:
        saver.close()
    assert set(answers.values()) <= {"old", "new"}
    return {t for t, m in answers.items() if m == "new"}


def test_canary_reads_move_a_stable_growing_share_of_threads(marked_stores, tmp_path):
    stores, threads = marked_stores
    assert _readers_of_new(stores, threads, 0, tmp_path) == set()
    at_10 = _readers_of_new(stores, threads, 10, tmp_path)
    at_50 = _readers_of_new(stores, threads, 50, tmp_path)
    assert _readers_of_new(stores, threads, 50, tmp_path) == at_50  # stable: same threads each time
    assert _readers_of_new(stores, threads, 100, tmp_path) == set(threads)
    assert at_10 < at_50  # growing the canary only adds threads: none flips back to old
    # a stable hash spreads threads evenly: wide bounds, a 400-thread sample (not a timing)
    assert 10 <= len(at_10) <= 80 and 140 <= len(at_50) <= 260


def test_canary_choice_is_the_same_in_another_process(marked_stores, tmp_path):
    import subprocess
    import sys

    stores, threads = marked_stores
    here = _readers_of_new(stores, threads, 30, tmp_path)
    code = (
        "import json,sys; from dualsaver.saver._shadow import in_canary;"
        "print(json.dumps([t for t in json.load(sys.stdin) if in_canary(t, 30)]))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(threads), capture_output=True, text=True,
        env={**cli_env(), "PYTHONHASHSEED": "12345"}, check=True,
    )
    assert set(json.loads(there.stdout)) == here


def test_canary_only_applies_in_read_switch(marked_stores, tmp_path):
    stores, threads = marked_stores
    for phase, expected in (("backfill", "old"), ("decommission", "new")):
        saver = DualSaver(*stores, phase, canary_percent=50, journal=tmp_path / "j.sqlite")
        try:
            seen = {marker_of(saver.get_tuple({"configurable": {"thread_id": t}})) for t in threads[:50]}
        finally:
            saver.close()
        assert seen == {expected}


def test_a_thread_old_missed_a_write_of_is_read_from_new_whatever_the_canary(tmp_path):
    """Outside the canary a thread is read from old, the secondary of read-switch. When old
    missed a write of it (journaled), old's answer is stale: the turn acknowledged a moment
    ago would vanish (here, the interrupt the graph stopped at). Such a thread is read from
    new, which took every write first."""
    from langgraph.types import Command

    from dualsaver.stores import open_saver
    from tests.faulty import Faulty
    from tests.graphs import build_agent, config, expected_results, run_turn

    with open_saver(f"sqlite:///{tmp_path / 'o.sqlite'}") as o, open_saver(f"sqlite:///{tmp_path / 'n.sqlite'}") as n:
        old = Faulty(o)
        saver = DualSaver(old, n, "read-switch", canary_percent=0, journal=tmp_path / "j.sqlite",
                          circuit_cool_down=None)
        app = build_agent(saver)
        run_turn(app, "t", "alpha")
        old.mode = "raise"
        app.invoke({"topic": "beta"}, config("t"))  # old misses this turn's writes
        old.mode = None
        assert app.get_state(config("t")).next == ("approve",)  # what new holds, not old's stale state
        assert app.invoke(Command(resume=True), config("t"))["results"] == expected_results("alpha", "beta")

        run_turn(app, "other", "alpha")
        run_turn(build_agent(o), "other", "gamma")  # a turn only old holds: shows which store answers
        assert app.get_state(config("other")).values["results"] == expected_results("alpha", "gamma")
        saver.close()


def test_a_thread_old_missed_a_write_of_on_another_replica_is_read_from_new_here_too(tmp_path, record_url):
    """The same across a fleet: replica A's old misses a turn (journaled, shipped to the
    control store). Replica B, whose own old writes all landed, read the thread from old and
    answered the turn before it, for as long as nobody repaired the journal. It now reads
    the fleet's journal again in the background and answers from new."""
    from dualsaver.stores import open_saver
    from tests.faulty import Faulty
    from tests.graphs import build_agent, config, expected_results, run_turn

    with open_saver(f"sqlite:///{tmp_path / 'o.sqlite'}") as o, open_saver(f"sqlite:///{tmp_path / 'n.sqlite'}") as n:
        old = Faulty(o)
        a = DualSaver(old, n, "read-switch", canary_percent=0, control=record_url, journal=tmp_path / "a.sqlite",
                      circuit_cool_down=None)
        b = DualSaver(o, n, "read-switch", canary_percent=0, control=record_url, journal=tmp_path / "b.sqlite")
        try:
            run_turn(build_agent(a), "t", "alpha")
            results = lambda: build_agent(b).get_state(config("t")).values.get("results")  # noqa: E731
            assert results() == expected_results("alpha")  # from old, which holds it all
            old.mode = "raise"
            run_turn(build_agent(a), "t", "beta")  # acknowledged; old missed it
            old.mode = None
            assert a.secondary_failures.total() > 0
            eventually(lambda: results() == expected_results("alpha", "beta"), "B answers the turn A acknowledged",
                       timeout=20)
            assert build_agent(o).get_state(config("t")).values["results"] == expected_results("alpha")  # old: stale
        finally:
            a.close()
            b.close()


@pytest.mark.parametrize("writer, reader, missing", [("backfill", "read-switch", "new"),
                                                     ("read-switch", "backfill", "old")])
def test_a_thread_one_store_missed_on_a_replica_of_the_other_phase_is_read_from_the_other(
    tmp_path, record_url, writer, reader, missing
):
    """The rolling moves between backfill and read-switch: replicas of both phases write at
    once. The writer's second store misses a turn (journaled, shipped); the reader, whose
    read store is that one, answered the thread without the turn until a repair. It now
    reads the fleet's journal in the background and answers from the other store. A thread
    no store missed anything of is read as the phase routes it."""
    from dualsaver.stores import open_saver
    from tests.faulty import Faulty
    from tests.graphs import build_agent, config, expected_results, run_turn

    with open_saver(f"sqlite:///{tmp_path / 'o.sqlite'}") as o, open_saver(f"sqlite:///{tmp_path / 'n.sqlite'}") as n:
        stores = {"old": o, "new": n}
        faulty = Faulty(stores[missing])
        a = DualSaver(*(faulty if role == missing else stores[role] for role in ("old", "new")), writer,
                      control=record_url, journal=tmp_path / "a.sqlite", circuit_cool_down=None)
        b = DualSaver(o, n, reader, control=record_url, journal=tmp_path / "b.sqlite")
        try:
            run_turn(build_agent(a), "t", "alpha")
            results = lambda: build_agent(b).get_state(config("t")).values.get("results")  # noqa: E731
            assert results() == expected_results("alpha")
            faulty.mode = "raise"
            run_turn(build_agent(a), "t", "beta")  # acknowledged by A; its second store misses it
            faulty.mode = None
            assert a.secondary_failures.total() > 0
            eventually(lambda: results() == expected_results("alpha", "beta"), "B answers the turn A acknowledged",
                       timeout=20)
            stale = build_agent(stores[missing]).get_state(config("t")).values["results"]
            assert stale == expected_results("alpha")
            run_turn(build_agent(b), "t", "gamma")  # B writes it on, both stores
            assert results() == expected_results("alpha", "beta", "gamma")
            run_turn(build_agent(b), "u", "alpha")  # a thread no store missed anything of: the read store
            run_turn(build_agent(stores[missing]), "u", "delta")  # a turn only the read store holds
            assert build_agent(b).get_state(config("u")).values["results"] == expected_results("alpha", "delta")
        finally:
            a.close()
            b.close()


@pytest.mark.parametrize("journal_at", ["local", "postgres", "redis"])
def test_a_repair_ends_the_steering_of_what_it_settled(tmp_path, request, journal_at, monkeypatch):
    """Old misses a turn on a replica in read-switch (canary 0: reads go to old), which reads
    the thread from new from then on. `dualsaver repair --journal` copies the turn into old
    and settles the entry; the replica, which keeps running, reads the journal again in the
    background and reads the thread from old again, as the phase routes it, instead of
    steering it (and remembering it) for as long as the process lives. A turn written to old
    alone afterwards shows which store answers."""
    from dualsaver.cli import main
    from dualsaver.saver import _stale
    from dualsaver.stores import open_saver
    from tests.faulty import Faulty
    from tests.graphs import build_agent, config, expected_results, run_turn

    monkeypatch.setattr(_stale, "READ_EVERY", 0.2)  # the settling shows within the test's patience
    control = None if journal_at == "local" else request.getfixturevalue("pg_url" if journal_at == "postgres"
                                                                         else "redis_url")
    old_url, new_url = f"sqlite:///{tmp_path / 'o.sqlite'}", f"sqlite:///{tmp_path / 'n.sqlite'}"
    with open_saver(old_url) as o, open_saver(new_url) as n:
        old = Faulty(o)
        saver = DualSaver(old, n, "read-switch", canary_percent=0, control=control, journal=tmp_path / "j.sqlite",
                          circuit_cool_down=None)
        results = lambda: build_agent(saver).get_state(config("t")).values["results"]  # noqa: E731
        try:
            run_turn(build_agent(saver), "t", "alpha")
            old.mode = "raise"
            run_turn(build_agent(saver), "t", "beta")  # old misses it
            old.mode = None
            assert results() == expected_results("alpha", "beta")  # from new: old's copy lacks beta
            where = ["--journal", str(tmp_path / "j.sqlite")] if control is None else ["--journal", "--control", control]
            assert main(["repair", "--old", old_url, "--new", new_url, *where, "--phase", "read-switch"]) == 0
            run_turn(build_agent(o), "t", "gamma")  # a turn old alone holds: shows which store answers
            eventually(lambda: results() == expected_results("alpha", "beta", "gamma"),
                       "the replica reads the repaired thread from old again", timeout=20)
            assert "t" not in saver.recorder.stale_threads("old")
        finally:
            saver.close()


# --------------------------------------------------------------------------- the settings file


def test_settings_file_is_strict_and_expands_variables(tmp_path):
    from dualsaver.control.settings import SettingsError, load

    def settings_of(text: str, **env: str):
        path = tmp_path / "s.toml"
        path.write_text(text)
        return load(path, environ=env)

    s = settings_of(
        '[migration]\nphase = "read_switch"\ncanary_percent = 25\nshadow_read_rate = 0.5\nsecondary_timeout = 0\n'
        '[stores]\nnew = "postgresql://app:${PW}@db/app"\n[phase_record]\nurl = "redis://r:6379/0"\npoll_interval = 1\n',
        PW="pw-1",
    )
    assert (s.phase, s.canary_percent, s.shadow_read_rate, s.secondary_timeout) == ("read_switch", 25, 0.5, None)
    assert s.new_url == "postgresql://app:pw-1@db/app" and "pw-1" not in repr(s)
    assert s.saver_kwargs()["canary_percent"] == 25 and s.saver_kwargs()["shadow_read_rate"] == 0.5
    for text, message in (
        ('[migration]\nphse = "backfill"\n', "unknown key migration.phse"),
        ("[migrations]\n", "unknown section [migrations]"),
        ('[migration]\nstrict = "yes"\n', "migration.strict must be bool"),
        ('[migration]\nphase = "sideways"\n', "unknown phase 'sideways'"),
        ("[migration]\ncanary_percent = 150\n", "canary_percent must be between 0 and 100"),
        ('[stores]\nold = "sqlite:///${MISSING_VAR}"\n', "environment variable ${MISSING_VAR} is not set"),
        ("[migration\n", "not valid TOML"),
    ):
        with pytest.raises(SettingsError, match=re.escape(message)):
            settings_of(text)


def test_settings_build_a_dual_saver(tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver

    s = Settings(
        canary_percent=10, shadow_read_rate=0.25, journal=str(tmp_path / "j.sqlite"), strict=True, write_behind=False
    )
    with DualSaver(InMemorySaver(), InMemorySaver(), "read-switch", **s.saver_kwargs()) as saver:
        assert (saver.canary_percent, saver.shadow_read_rate, saver.strict) == (10, 0.25, True)
        assert saver.write_behind is False


def test_commands_refuse_a_bad_settings_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[migration]\nphse = "x"\n')
    for args in (["status", "--config", str(bad)], ["phase", "show", "--config", str(bad)]):
        done = run_cli(*args, cwd=tmp_path)
        assert done.returncode == 2 and "unknown key migration.phse" in done.stderr


def test_a_dual_saver_without_a_phase_follows_the_record_named_in_the_settings(monkeypatch, tmp_path, redis_url):
    """Needs DualSaver to take its source from `phase_source(phase)` (see the report)."""
    from langgraph.checkpoint.memory import InMemorySaver

    monkeypatch.delenv("DUALSAVER_PHASE", raising=False)
    path = tmp_path / "dualsaver.toml"
    path.write_text(f'[phase_record]\nurl = "{redis_url}"\npoll_interval = 0.05\n')
    monkeypatch.setenv("DUALSAVER_SETTINGS", str(path))
    saver = DualSaver(InMemorySaver(), InMemorySaver(), journal=tmp_path / "j.sqlite")
    try:
        assert saver.phase is Phase.SHADOW_WRITE and saver.phase_origin.startswith("phase record")
        with open_control_store(redis_url) as record:
            record.set_phase(Phase.BACKFILL, expected_version=0, by="op")
        eventually(lambda: saver.phase is Phase.BACKFILL, "the saver follows the record", timeout=10)
    finally:
        saver.close()
