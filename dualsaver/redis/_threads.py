"""Plans that span or maintain whole threads: the thread index, copy, prune, run deletion.

A mixin of `BaseRedisSaver` (base.py), which provides the key layout (`_keys`,
`_index_keys`, `_index_first`, `_write`, `_plan_delete_thread`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dualsaver.redis.ops import COPY_CHUNK, PRUNE_STRATEGIES, THREAD_PAGE, chunks, command, pairs, pipeline, script
from dualsaver.sansio import Emit, Plan


class ThreadPlans:
    _keys: Any
    _index_keys: tuple[str, str]
    _index_first: Any
    _write: Any
    _plan_delete_thread: Any

    def _plan_delete_for_runs(self, run_ids: Sequence[str]) -> Plan:
        """Visits every thread (the run ids are inside each thread's records)."""
        runs = tuple(str(r) for r in run_ids)
        if not runs:
            return
        after: str | None = None
        while True:
            live, after, done = yield from self._plan_thread_page(after)
            if live:
                yield pipeline(script("remove", self._keys(t), ("runs", *runs)) for t in live)
            if done:
                return

    def _plan_copy_thread(self, source_thread_id: str, target_thread_id: str) -> Plan:
        """Insert-if-absent copy of every checkpoint, blob and write; blobs go first."""
        target = str(target_thread_id)
        cps, blobs, writes = yield script("dump", self._keys(str(source_thread_id)))
        if not cps:
            return
        yield from self._index_first(target)
        for chunk in chunks(pairs(blobs), COPY_CHUNK * 5):
            yield self._write(target, cp_mode="nx", w_mode="nx", blobs=chunk)
        pending = dict(pairs(writes))
        for chunk in chunks(pairs(cps), COPY_CHUNK):
            own = [(m, pending.pop(m)) for m, _ in chunk if m in pending]
            yield self._write(target, cp_mode="nx", w_mode="nx", checkpoints=chunk, writes=own)
        if pending:  # writes whose checkpoint was never saved
            yield self._write(target, cp_mode="nx", w_mode="nx", writes=list(pending.items()))

    def _plan_prune(self, thread_ids: Sequence[str], strategy: str) -> Plan:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        ids = [str(t) for t in thread_ids]
        if not ids:
            return
        if strategy == "delete":
            for thread_id in ids:
                yield from self._plan_delete_thread(thread_id)
            return
        checks = yield pipeline(script("remove", self._keys(t), ("check",)) for t in ids)
        _refuse_delta([t for t, r in zip(ids, checks) if r == -1])
        for thread_id in ids:  # each thread atomically; a late DeltaChannel user is refused
            if (yield script("remove", self._keys(thread_id), ("latest",))) == -1:
                _refuse_delta([thread_id])

    # -- thread index ----------------------------------------------------------------------

    def _plan_thread_page(self, after: str | None) -> Plan:
        """(live thread ids after `after`, the last id read, whether the index ended)."""
        low: Any = b"(" + after.encode() if after is not None else "-"
        raw = yield command("ZRANGEBYLEX", self._index_keys[0], low, "+", "LIMIT", 0, THREAD_PAGE)
        ids = [r.decode() for r in raw]
        if not ids:
            return [], after, True
        exists = yield pipeline(command("EXISTS", self._keys(t)[0]) for t in ids)
        live = [t for t, e in zip(ids, exists) if e]
        return live, ids[-1], len(ids) < THREAD_PAGE

    def _plan_sweep(self) -> Plan:
        """Drop index entries of threads whose keys expired (see INDEX 'sweep')."""
        offset = 0
        while True:
            raw = yield script("index", self._index_keys, ("expired", offset, THREAD_PAGE))
            ids = [r.decode() for r in raw]
            if not ids:
                return
            exists = yield pipeline(command("EXISTS", self._keys(t)[0]) for t in ids)
            gone = [t for t, e in zip(ids, exists) if not e]
            if gone:
                yield script("index", self._index_keys, ("sweep", *gone))
            if len(ids) < THREAD_PAGE:
                return
            offset += len(ids) - len(gone)

    def _plan_thread_ids(self) -> Plan:
        yield from self._plan_sweep()
        after: str | None = None
        while True:
            live, after, done = yield from self._plan_thread_page(after)
            for thread_id in live:
                yield Emit((thread_id,))
            if done:
                return


def _refuse_delta(thread_ids: Sequence[str]) -> None:
    if thread_ids:
        raise NotImplementedError(
            f"keep_latest can't prune threads that use a DeltaChannel: {', '.join(sorted(thread_ids))}"
        )
