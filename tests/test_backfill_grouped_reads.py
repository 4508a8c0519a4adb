"""The copy reads several threads in one stream (`read_threads`) where the source can, and a
thread that fails to read still fails alone: the thread being read when the stream broke
fails (its rows read so far are kept), the threads the stream had not reached are read again
one by one, every other thread is copied whole, no row is taken twice, and each thread is
finished exactly once.

The source is a real SQLite store holding a real graph's threads; the only thing added is
the fault: its streams raise an I/O error after a given number of rows (hypothesis picks
where, and which single-thread reads fail too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.sqlite import SqliteSaver

from dualsaver import sansio
from dualsaver.migrate import _flow
from dualsaver.migrate._copy import read_batches
from dualsaver.migrate._flow import Flow, threads_per_read
from dualsaver.sansio import Targets
from dualsaver.stores import native_for
from tests import check_support as cs

THREADS = [f"g-{i}" for i in range(7)]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    path = Path(tmp_path_factory.mktemp("grouped")) / "source.sqlite"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        saver.setup()
        cs.populate(saver, THREADS)
        yield native_for(saver)


class Broken:
    """The real store, its streams broken: `read_threads` raises before its row number
    `group_fails_at` (None: never), `read_thread` of a thread in `alone_fails` before its
    row number `alone_fails[thread]`."""

    def __init__(self, store, group_fails_at: int | None, alone_fails: dict[str, int]) -> None:
        self.store, self.group_fails_at, self.alone_fails = store, group_fails_at, alone_fails
        self.calls: list[tuple[str, ...]] = []

    def read_threads(self, thread_ids, **options):
        self.calls.append(tuple(thread_ids))
        return _broken(self.store.read_threads(thread_ids, **options), self.group_fails_at)

    def read_thread(self, thread_id, **options):
        self.calls.append((thread_id,))
        return _broken(self.store.read_thread(thread_id, **options), self.alone_fails.get(thread_id))


def _broken(items, fails_at: int | None):
    for n, item in enumerate(items):
        if n == fails_at:
            raise OSError("the disk went away")
        yield item
    if fails_at is not None and fails_at >= 0 and n + 1 == fails_at:  # at the very end of the stream
        raise OSError("the disk went away")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    per_read=st.integers(1, 8),
    group_fails_at=st.one_of(st.none(), st.integers(0, 60)),
    alone_fails=st.dictionaries(st.sampled_from(THREADS), st.integers(0, 8), max_size=2),
)
def test_a_thread_that_fails_to_read_fails_alone(source, per_read, group_fails_at, alone_fails) -> None:
    whole = {t: [item.key for item in source.read_thread(t)] for t in THREADS}
    finished: dict[str, str | None] = {}

    def on_finished(threads):
        for t, error in threads:
            assert t not in finished, f"{t} finished twice"
            finished[t] = error

    broken = Broken(source, group_fails_at, alone_fails)
    flow = Flow(on_finished=on_finished, threads_per_read=per_read)
    taken: list = []
    for batch in sansio.stream(read_batches(flow, iter(THREADS)), Targets(source=broken)):
        taken.extend(batch.items)
        flow.committed(batch, (len(batch.items), 0), 0.0)

    keys = [item.key for item in taken]
    assert len(keys) == len(set(keys)), "a row was taken twice"
    assert set(finished) == set(THREADS)
    assert all(len(call) <= per_read for call in broken.calls)
    failed = {t for t, error in finished.items() if error is not None}
    for t in THREADS:
        got = [k for k in keys if k[0] == t]
        if t in failed:
            assert got == whole[t][: len(got)]  # what was read before the failure is kept
        else:
            assert got == whole[t], f"{t} reported done but not copied whole"
    # exactly these fail: in each broken stream of several, the thread whose row came last;
    # each thread whose read alone broke
    expected = set()
    for call in broken.calls:
        rows = list(source.read_threads(call)) if len(call) > 1 else whole[call[0]]
        fails_at = group_fails_at if len(call) > 1 else alone_fails.get(call[0])
        if fails_at is not None and fails_at <= len(rows):
            if len(call) == 1:
                expected.add(call[0])
            elif fails_at > 0:
                expected.add(rows[fails_at - 1].thread_id)
    assert failed == expected


def test_stores_that_read_several_threads_at_once_are_read_so(source) -> None:
    assert threads_per_read(source) == _flow.THREADS_PER_READ > 1
    assert threads_per_read(object()) == 1
