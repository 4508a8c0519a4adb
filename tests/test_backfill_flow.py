"""The streaming decisions: a thread is finished once, only after every batch holding its rows
settled, and it is done exactly when none of them failed (whatever order writers finish in)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

import dualsaver.migrate._flow as bf
from dualsaver.stores.native import StoredCheckpoint, Unreadable


def _item(thread_id: str, n: int) -> StoredCheckpoint:
    return StoredCheckpoint(thread_id, "", f"{n:04d}", None, {}, {}, ())  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 7), min_size=1, max_size=8),
    batch=st.integers(1, 5),
    seed=st.integers(0, 10**6),
    fail_rate=st.sampled_from([0.0, 0.3]),
    unreadable=st.sets(st.integers(0, 7), max_size=2),
)
def test_threads_finish_once_after_all_their_batches(sizes, batch, seed, fail_rate, unreadable):
    rng = random.Random(seed)
    old = bf.BATCH_CHECKPOINTS
    bf.BATCH_CHECKPOINTS = batch
    try:
        finished: dict[str, str | None] = {}

        def on_finished(threads):
            for t, error in threads:
                assert t not in finished, "finished twice"
                finished[t] = error

        flow = bf.Flow(on_finished=on_finished)
        pending: list[bf.Batch] = []
        holders: dict[str, list[int]] = {}
        for n, size in enumerate(sizes):
            t = f"t{n}"
            flow.begin(t)
            for i in range(size):
                item = Unreadable(t, "", f"{i:04d}", "bad") if (n in unreadable and i == 0) else _item(t, i)
                if b := flow.take(item):
                    pending.append(b)
            flow.end(t)
            # writers finish in any order, some of them interleaved with reading
            while pending and rng.random() < 0.5:
                _settle(flow, pending.pop(rng.randrange(len(pending))), rng, fail_rate, holders)
        if b := flow.flush():
            pending.append(b)
        for t in [f"t{n}" for n in range(len(sizes))]:
            if t in finished:  # finished early: no batch of its may still be pending
                assert all(t not in b.threads for b in pending)
        while pending:
            _settle(flow, pending.pop(rng.randrange(len(pending))), rng, fail_rate, holders)
        assert set(finished) == {f"t{n}" for n in range(len(sizes))}
        for n in range(len(sizes)):
            t = f"t{n}"
            failed_batch = any(not ok for ok in holders.get(t, []))
            bad_row = n in unreadable and sizes[n] > 0
            assert (finished[t] is not None) == (failed_batch or bad_row)
    finally:
        bf.BATCH_CHECKPOINTS = old


def _settle(flow, batch, rng, fail_rate, holders) -> None:
    ok = rng.random() >= fail_rate
    for t in batch.threads:
        holders.setdefault(t, []).append(ok)
    if ok:
        flow.committed(batch, (len(batch.items), 0), 0.0)
    else:
        flow.failed(batch, RuntimeError("boom"), 0.0)
