"""Write-behind, shadow-write's default: what it promises beyond "the secondary catches up".

- it holds a write back for a pause in the calls, never longer than MAX_DELAY and never
  with a quarter of the queue full (a pure rule, checked over its whole input space);
- deletes are synchronous: when delete_thread returns, new no longer has the thread;
- a replica leaving shadow-write lets its queue land before its next call, so new
  receives every write acknowledged in shadow-write before any later one;
- a background write that fails after the phase moved is journaled with its call's phase;
- writes still queued when the saver closes, or when their event loop shuts down, are
  journaled rather than dropped;
- a queued write holds its values as bytes taken at call time: no copy of the caller's
  objects stays alive in the queue (a backlog of live copies slows every garbage collection).
"""

from __future__ import annotations

import gc
import threading

from hypothesis import given
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver

from dualsaver import DualSaver, Phase
from dualsaver.saver._writebehind import LIMIT, MAX_DELAY, QUIET, pause_wait
from tests.faulty import Faulty, StoreDown
from tests.ops_support import eventually
from tests.savers import _marker_put, put_marker, sync_saver

seconds = st.floats(min_value=0, max_value=10, allow_nan=False)


@given(queued_ago=seconds, last_call_ago=seconds, backlog=st.integers(0, LIMIT))
def test_a_write_is_held_back_only_for_a_pause_and_never_past_the_bound(queued_ago, last_call_ago, backlog):
    now = 100.0
    last_call_ago = min(last_call_ago, queued_ago)  # the call that queued it was a call
    wait = pause_wait(now, now - queued_ago, now - last_call_ago, backlog, LIMIT)
    assert wait >= 0
    assert queued_ago + wait <= MAX_DELAY + 1e-9 or wait == 0  # never held past the bound
    if backlog * 4 >= LIMIT or queued_ago >= MAX_DELAY or last_call_ago >= QUIET:
        assert wait == 0  # a quarter full, too old, or the calls paused: write now
    else:
        assert wait > 0  # the application is mid-burst: stay out of its way


def _held(store, thread_id: str):
    return store.get_tuple({"configurable": {"thread_id": thread_id}})


def test_delete_thread_reaches_both_stores_before_it_returns(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as old, sync_saver("sqlite", tmp=tmp_path) as new:
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        assert saver.write_behind  # the default
        put_marker(saver, "t", "x")
        saver.delete_thread("t")  # no flush: the queued put and the delete both landed
        assert _held(old, "t") is None and _held(new, "t") is None


class Recording(Faulty):
    """Notes the marker of every put as it reaches the store, before any hang."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.markers: list[str] = []

    def put(self, config, checkpoint, metadata, new_versions):
        self.markers.append(checkpoint["channel_values"]["marker"])
        return super().put(config, checkpoint, metadata, new_versions)


def test_leaving_shadow_write_lands_the_queue_before_the_next_call(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as old, sync_saver("sqlite", tmp=tmp_path) as inner:
        new = Recording(inner)
        new.mode = "hang"  # the secondary answers only when released
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", secondary_timeout=30)
        for n in range(5):
            put_marker(saver, "t", str(n))  # acknowledged while new has not answered at all
        assert _held(inner, "t") is None
        saver.phase = Phase.BACKFILL
        saver.phase = Phase.READ_SWITCH  # new is now the primary
        threading.Timer(0.2, new.release.set).start()
        put_marker(saver, "t", "5")
        # new received the queued shadow-write puts first, then the read-switch one
        assert new.markers == ["0", "1", "2", "3", "4", "5"]
        assert _held(inner, "t").checkpoint["channel_values"]["marker"] == "5"
        assert saver.secondary_failures.total() == 0


class FailsWhenReleased(Faulty):
    """Its puts wait until released, then fail: a background write outliving its phase."""

    def put(self, config, checkpoint, metadata, new_versions):
        self.release.wait(30)
        raise StoreDown("put: connection reset")


def test_a_background_failure_is_journaled_with_the_phase_of_its_call(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as old:
        new = FailsWhenReleased(InMemorySaver())
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        put_marker(saver, "t", "x")
        saver.phase = Phase.BACKFILL  # the write is still queued, or running, in the background
        new.release.set()
        assert saver.flush(timeout=30)
        rows = list(saver.journal.pending())
        assert [(r.operation, r.phase) for r in rows] == [("put", "shadow-write")]


def test_closing_with_writes_still_queued_journals_them(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as old:
        new = Faulty(InMemorySaver())
        new.mode = "hang"  # new never answers while the saver closes
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", secondary_timeout=0.2)
        for n in range(3):
            put_marker(saver, "t", str(n))
        journal = saver.journal
        saver._sync.close()  # what DualSaver.close and the exit hook do first
        rows = list(journal.pending())
        new.release.set()
        assert [(r.operation, r.thread_id) for r in rows] == [("put", "t")] * 3
        assert all("Abandoned" in r.error for r in rows)


def test_an_event_loop_closing_under_queued_writes_journals_them(tmp_path):
    import asyncio

    from tests.savers import aput_marker, async_saver

    async def main() -> DualSaver:
        async with async_saver("sqlite", tmp=tmp_path) as old:
            new = Faulty(InMemorySaver())
            new.mode = "hang"
            saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", secondary_timeout=30)
            for n in range(3):
                await aput_marker(saver, "t", str(n))
            return saver  # no aflush: asyncio.run cancels the queued writes

    saver = asyncio.run(main())
    rows = list(saver.journal.pending())
    assert [(r.operation, r.thread_id) for r in rows] == [("put", "t")] * 3
    assert all("event loop closed" in r.error for r in rows)


class Tracked(str):
    """A str that counts its live instances, the copies pickle makes included."""

    alive = 0

    def __new__(cls, value: str) -> Tracked:
        Tracked.alive += 1
        return super().__new__(cls, value)

    def __del__(self) -> None:
        Tracked.alive -= 1


def test_a_queued_write_holds_bytes_not_live_copies_of_its_values(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as old:
        new = Recording(InMemorySaver())
        new.mode = "hang"
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", secondary_timeout=30)
        put_marker(saver, "t", "first")
        assert new.entered.wait(30)  # the worker holds the first write; the rest wait in the queue
        values = [Tracked(str(n)) for n in range(5)]
        gc.collect()
        before = Tracked.alive
        for value in values:
            saver.put(*_marker_put(saver, "t", value))
        gc.collect()
        assert Tracked.alive == before  # five writes queued, and not one copy of their values alive
        new.release.set()
        assert saver.flush(timeout=30)
        assert new.markers == ["first", "0", "1", "2", "3", "4"]  # each thawed into a private copy
        assert [type(m) for m in new.markers[1:]] == [Tracked] * 5
        assert all(m is not v for m, v in zip(new.markers[1:], values))


def test_the_sync_queue_runs_jobs_in_order_waits_for_room_and_abandons_on_close():
    """The lock-free queue: FIFO, bounded (a caller waits for room, then gives up), a
    drain that waits for every job, and close journaling what a stuck worker still holds."""
    from dualsaver.saver._writebehind import SyncWriteBehind

    ran, abandoned, release = [], [], threading.Event()

    def run(job):
        if job == "stuck":
            release.wait(30)
        ran.append(job)

    writes = SyncWriteBehind(run, lambda job, why: abandoned.append(job), exit_timeout=1, limit=4)
    for n in range(50):
        assert writes.submit(n, timeout=5)
    assert writes.drain(timeout=30) and ran == list(range(50))
    assert writes.submit("stuck", timeout=5)
    eventually(lambda: writes._busy_since is not None, "the worker starting the stuck job")
    for n in range(3):
        assert writes.submit(n, timeout=5)
    assert not writes.submit("no room", timeout=0.2)  # full, the worker busy: bounded wait
    assert not writes.drain(timeout=0.2)
    assert not writes.close(timeout=0.2)
    assert abandoned == ["stuck", 0, 1, 2]
    release.set()
    eventually(lambda: not writes._worker.is_alive(), "the worker stopping after close")
    assert ran[50:] == ["stuck"]  # the abandoned rest never ran
