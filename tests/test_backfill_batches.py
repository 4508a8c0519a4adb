"""Where the backfill cuts its batches (hypothesis): every row once, in order; a full batch
ends where a thread ends, so a thread's checkpoints (and the blob rows they share) go in one
transaction, unless that one thread alone would hold it open past twice the batch."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

import dualsaver.migrate._flow as bf
from dualsaver.stores.native import StoredCheckpoint, StoredWrite


def _item(thread_id: str, n: int, writes: int) -> StoredCheckpoint:
    ws = tuple(StoredWrite("task", "", i, "c", None) for i in range(writes))
    return StoredCheckpoint(thread_id, "", f"{n:04d}", None, {}, {}, ws)  # type: ignore[arg-type]


@given(
    threads=st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=8),
    batch=st.integers(1, 6),
    max_writes=st.integers(1, 12),
)
def test_full_batches_end_where_a_thread_ends(threads, batch, max_writes) -> None:
    old = bf.BATCH_CHECKPOINTS, bf.BATCH_WRITES
    bf.BATCH_CHECKPOINTS, bf.BATCH_WRITES = batch, max_writes
    try:
        flow = bf.Flow()
        batches: list[bf.Batch] = []
        rows = []
        for n, writes in enumerate(threads):
            t = f"t{n}"
            flow.begin(t)
            for i, w in enumerate(writes):
                rows.append((t, f"{i:04d}"))
                if b := flow.take(_item(t, i, w)):
                    batches.append(b)
            flow.end(t)
        if b := flow.flush():
            batches.append(b)
        assert [(i.thread_id, i.checkpoint_id) for b in batches for i in b.items] == rows
        for b in batches:
            assert b.threads == list(dict.fromkeys(i.thread_id for i in b.items))
            before_last = b.items[:-1]  # a batch takes rows while it is below twice the caps
            assert len(before_last) < 2 * batch and sum(len(i.writes) for i in before_last) < 2 * max_writes
        for b, after in itertools.pairwise(batches):
            assert len(b.items) >= batch or sum(len(i.writes) for i in b.items) >= max_writes  # cut only when full
            split_thread = b.items[-1].thread_id == after.items[0].thread_id
            if split_thread:  # only a thread that alone filled the batch twice over is split
                writes = sum(len(i.writes) for i in b.items)
                assert len(b.items) >= 2 * batch or writes >= 2 * max_writes
    finally:
        bf.BATCH_CHECKPOINTS, bf.BATCH_WRITES = old
