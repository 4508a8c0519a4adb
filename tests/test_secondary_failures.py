"""A failing or hanging secondary never fails or stalls the caller; the journal holds the miss."""

from __future__ import annotations

import threading

import pytest

from dualsaver import DualSaver, Journal, Phase, SecondaryWriteError
from dualsaver.saver._breaker import CLOSED, Breaker
from tests.faulty import Faulty, StoreDown
from tests.graphs import arun_turn, build_agent, config, expected_results, run_turn
from tests.savers import async_saver, sync_saver


def _journal_rows(path) -> list:
    journal = Journal(path)
    try:
        return list(journal.pending())
    finally:
        journal.close()


def _record_admissions(breaker: Breaker) -> list[str]:
    """The breaker's state at each call it let through (a probe would be half-open)."""
    admitted: list[str] = []
    allow = breaker.allow
    lock = threading.Lock()

    def recording() -> bool:
        with lock:  # the state read and the decision as one step, against other callers
            state = breaker.state
            allowed = allow()
            if allowed:
                admitted.append(state)
            return allowed

    breaker.allow = recording  # type: ignore[method-assign]
    return admitted


@pytest.mark.parametrize("phase", [Phase.SHADOW_WRITE, Phase.READ_SWITCH], ids=str)
def test_raising_secondary_is_journaled_not_raised(tmp_path, phase):
    with sync_saver("sqlite", tmp=tmp_path) as a, sync_saver("sqlite", tmp=tmp_path) as b:
        old, new = Faulty(a), Faulty(b)
        secondary = new if phase is Phase.SHADOW_WRITE else old
        secondary.mode = "raise"
        saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite")
        role = "old" if secondary is old else "new"
        admitted = _record_admissions(saver.breakers[role])
        final = run_turn(build_agent(saver), "t1", "alpha")
        assert final["results"] == expected_results("alpha")
        assert saver.flush(timeout=30)  # shadow-write writes new behind the caller's back
        rows = _journal_rows(tmp_path / "j.sqlite")
        assert rows and {r.store for r in rows} == {role}
        assert {r.operation for r in rows} == {"put", "put_writes"}
        # The first miss opens the secondary's circuit: the rest are journaled without a try.
        # Calls already admitted while it was closed (parallel branches write at the same
        # moment in read-switch) still reach the store; none is admitted once it is open.
        assert rows[0].error.startswith("StoreDown") and all(r.thread_id == "t1" for r in rows)
        tried = [r for r in rows if r.error.startswith("StoreDown")]
        skipped = [r for r in rows if r.error.startswith("CircuitOpen")]
        assert len(tried) + len(skipped) == len(rows) and skipped
        sent = [c for c in secondary.calls if c in ("put", "put_writes")]
        assert admitted == [CLOSED] * len(sent) and len(tried) == len(sent)
        puts = [r for r in rows if r.operation == "put"]
        primary = new if secondary is old else old
        # Every checkpoint the primary holds and the secondary missed is named in the journal.
        held = {(t.config["configurable"]["checkpoint_ns"], t.checkpoint["id"]) for t in primary.inner.list(config("t1"))}
        assert {(r.checkpoint_ns, r.checkpoint_id) for r in puts} == held
        assert saver.secondary_failures["put"] == len(puts)


@pytest.mark.parametrize("behind", [False, True], ids=["waiting", "write-behind"])
def test_hanging_secondary_is_bounded(tmp_path, behind):
    with sync_saver("memory") as a, sync_saver("memory") as b:
        new = Faulty(b)
        new.mode = "hang"
        saver = DualSaver(
            a, new, Phase.SHADOW_WRITE, secondary_timeout=0.2, journal=tmp_path / "j.sqlite", write_behind=behind
        )
        done = threading.Event()
        result: dict = {}

        def invoke() -> None:
            result["state"] = run_turn(build_agent(saver), "t1", "alpha")
            done.set()

        worker = threading.Thread(target=invoke, daemon=True)
        worker.start()
        # Liveness, not speed: the hung store is never released, so without a bound the
        # run could not finish at all.
        assert done.wait(timeout=120), "a hanging secondary stalled the caller"
        assert result["state"]["results"] == expected_results("alpha")
        if behind:  # nothing waited for new; once it answers, the queue catches up
            new.release.set()
            assert saver.flush(timeout=60)
            assert b.get_tuple(config("t1")) == a.get_tuple(config("t1"))
        else:
            new.release.set()
            rows = _journal_rows(tmp_path / "j.sqlite")
            # The calls already in flight (parallel branches) waited out the bound; the open
            # circuit skipped every later one: they were journaled without waiting.
            timed_out = [r for r in rows if r.error.startswith("SecondaryTimeout")]
            skipped = [r for r in rows if r.error.startswith("CircuitOpen")]
            assert len(timed_out) == len(new.calls) and skipped and len(timed_out) + len(skipped) == len(rows)
        saver.close()


def _threads_of(monkeypatch, store_class: type, method: str, store, names: list[str]) -> list[str]:
    """`names`, which gets the name of each thread `method` of `store` runs on (patched on its
    class: the store keeps its own type, which decides whether its calls are bounded)."""
    original = getattr(store_class, method)

    def recording(self, *args, **kwargs):
        if self is store:
            names.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(store_class, method, recording)
    return names


@pytest.mark.parametrize("kind, bounded", [("memory", False), ("sqlite", True)])
def test_a_secondary_that_waits_on_nothing_is_written_on_the_callers_thread(tmp_path, monkeypatch, kind, bounded):
    """A bounded write runs on a pool's thread while the caller waits, so that a store hung
    on its server or disk cannot hold the caller past `secondary_timeout`: a thread hop, most
    of what dualsaver adds to a write in backfill and read-switch. LangGraph's in-memory saver
    waits on nothing outside the process, so in read-switch its writes (old's, second) run on
    the caller's thread; a SQLite file's are still bounded on the pool's."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    with sync_saver(kind, tmp=tmp_path) as old, sync_saver("sqlite", tmp=tmp_path) as new:
        cls = InMemorySaver if kind == "memory" else SqliteSaver
        names: list[str] = []
        for method in ("put", "put_writes"):
            _threads_of(monkeypatch, cls, method, old, names)
        saver = DualSaver(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        try:
            assert run_turn(build_agent(saver), "t1", "alpha")["results"] == expected_results("alpha")
        finally:
            saver.close()
    assert names
    assert all(name.startswith("dualsaver-secondary") for name in names) == bounded
    assert not any(name.startswith("dualsaver-secondary") for name in names) == (not bounded)


async def test_async_hanging_and_raising_secondary(tmp_path):
    async with async_saver("sqlite", tmp=tmp_path) as a, async_saver("memory") as b:
        new = Faulty(b)
        new.mode = "hang"
        saver = DualSaver(a, new, secondary_timeout=0.2, journal=tmp_path / "j.sqlite", write_behind=False,
                          circuit_cool_down=None)  # every call tries the store
        final = await arun_turn(build_agent(saver), "t1", "alpha")
        assert final["results"] == expected_results("alpha")
        new.release.set()
        new.mode = "raise"
        await arun_turn(build_agent(saver), "t2", "beta")
        errors = {(r.thread_id, r.error.split(":")[0]) for r in _journal_rows(tmp_path / "j.sqlite")}
        assert errors == {("t1", "SecondaryTimeout"), ("t2", "StoreDown")}


def test_strict_mode_raises_after_journaling_and_primary_keeps_the_write(tmp_path):
    with sync_saver("memory") as a, sync_saver("memory") as b:
        new = Faulty(b)
        new.mode = "raise"
        saver = DualSaver(a, new, strict=True, journal=tmp_path / "j.sqlite")
        with pytest.raises(SecondaryWriteError, match="secondary \\(new\\) failed"):
            build_agent(saver).invoke({"topic": "x"}, config("t1"))
        assert a.get_tuple(config("t1")) is not None
        assert _journal_rows(tmp_path / "j.sqlite")


def test_primary_failure_fails_the_call_and_never_reaches_secondary(tmp_path):
    with sync_saver("memory") as a, sync_saver("memory") as b:
        old, new = Faulty(a), Faulty(b)
        old.mode = "raise"
        saver = DualSaver(old, new, journal=tmp_path / "j.sqlite")
        with pytest.raises(StoreDown):
            build_agent(saver).invoke({"topic": "x"}, config("t1"))
        assert new.calls == [] and b.get_tuple(config("t1")) is None
        assert not (tmp_path / "j.sqlite").exists()  # nothing was missed: nothing journaled


async def test_async_write_behind_catches_up_in_order(tmp_path):
    async with async_saver("sqlite", tmp=tmp_path) as a, async_saver("memory") as b:
        new = Faulty(b)
        new.mode = "hang"
        async with DualSaver(a, new, secondary_timeout=30, journal=tmp_path / "j.sqlite", write_behind=True) as saver:
            final = await arun_turn(build_agent(saver), "t1", "alpha")  # new never answered
            assert final["results"] == expected_results("alpha")
            assert await b.aget_tuple(config("t1")) is None
            new.release.set()
            assert await saver.aflush(timeout=60)
            assert await b.aget_tuple(config("t1")) == await a.aget_tuple(config("t1"))
        assert new.calls[0] == "put" and saver.secondary_failures.total() == 0


def test_a_delete_old_missed_in_read_switch_does_not_come_back_through_the_fallback(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as a, sync_saver("sqlite", tmp=tmp_path) as b:
        old, new = Faulty(a), Faulty(b)
        saver = DualSaver(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        run_turn(build_agent(saver), "t1", "alpha")
        old.mode = "raise"  # old (the secondary) misses the delete; it is journaled
        saver.delete_thread("t1")
        old.mode = None
        assert a.get_tuple(config("t1")) is not None  # old still holds the deleted thread
        assert saver.get_tuple(config("t1")) is None  # the read miss does not fall back to it
        assert list(saver.list(config("t1"))) == []
        assert b.get_tuple(config("t1")) is None  # nor is it lazily copied back into new
        # the journal holds the delete for the repair that applies it to old
        journal = Journal(tmp_path / "j.sqlite")
        assert [r.operation for r in journal.pending()] == ["delete_thread"]
        journal.close()


def test_journal_entries_carry_scrubbed_bounded_error_text(tmp_path):
    """A driver's error may quote its connection string, password and all, at any length:
    the journal (read by operators, shipped to a control store) keeps one bounded line."""
    with sync_saver("sqlite", tmp=tmp_path) as a, sync_saver("sqlite", tmp=tmp_path) as b:
        old, new = a, Faulty(b)
        new.mode = "raise"
        new.message = "could not connect to postgresql://app:s3cr3t-pw@db:5432/app\n" + "detail " * 200
        with DualSaver(old, new, Phase.BACKFILL, journal=tmp_path / "j.sqlite", circuit_cool_down=None) as saver:
            run_turn(build_agent(saver), "t1", "alpha")
        rows = _journal_rows(tmp_path / "j.sqlite")
    assert rows
    for row in rows:
        assert "s3cr3t-pw" not in row.error and "\n" not in row.error
        assert row.error.startswith("StoreDown: ") and len(row.error) <= 220
        assert "postgresql://app:***@db:5432/app" in row.error
