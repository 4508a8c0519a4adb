"""Native access to a Redis checkpointer for the backfill and the check (see stores/native.py).

Rows are read and written as the store keeps them, so writes keep their task_path and idx
(exact=True). Plans are shared by the sync and async adapters, like the savers' own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from dualsaver.stores.native import StoredCheckpoint, StoredWrite, ThreadItem, Unreadable
from dualsaver.stores.redis_base import uses_delta
from dualsaver.stores.redis_ops import PAGE, Command, Emit, Plan, Script, _chunks
from dualsaver.stores.redis_codec import (
    Record,
    WriteEntry,
    blob_field,
    encode_blob,
    encode_writes,
    member,
    split_member,
)

if TYPE_CHECKING:
    from dualsaver.stores.redis import AsyncRedisSaver, RedisSaver
    from dualsaver.stores.redis_base import BaseRedisSaver

WRITE_BATCH = 100  # checkpoints per pipeline in write_checkpoints


def _stored(saver: BaseRedisSaver, thread_id: str, item: Any) -> ThreadItem:
    ns, checkpoint_id = split_member(item[0])
    try:
        _, _, record, checkpoint, writes = saver._decode(item)
        return StoredCheckpoint(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint_id,
            parent_checkpoint_id=record.parent,
            checkpoint=checkpoint,
            metadata=saver.serde.loads_typed(record.metadata),
            writes=tuple(
                StoredWrite(w.task_id, w.task_path, w.idx, w.channel, saver.serde.loads_typed(w.value))
                for w in writes
            ),
        )
    except Exception as err:  # a row that fails to load is reported, never a crash
        # The type only: a decoder's message may quote the undecodable bytes.
        return Unreadable(thread_id, ns, checkpoint_id, f"{type(err).__name__} while decoding")


def plan_read_thread(saver: BaseRedisSaver, thread_id: str) -> Plan:
    keys = saver._keys(thread_id)
    members = yield Command(("ZRANGE", keys[0], 0, -1))  # (ns, id) order: see redis_codec
    for page in _chunks(members, PAGE):
        _, items = yield Script("read", keys, ("ids", *page))
        for item in items:
            yield Emit(_stored(saver, thread_id, item))


def plan_checkpoint_keys(saver: BaseRedisSaver, thread_id: str) -> Plan:
    members = yield Command(("ZRANGE", saver._keys(thread_id)[0], 0, -1))
    return {split_member(m) for m in members}


def _write_op(saver: BaseRedisSaver, item: StoredCheckpoint) -> Script:
    """One checkpoint, its blobs and writes, inserted if absent (re-encoded with our serde)."""
    ns = item.checkpoint_ns
    stored = dict(item.checkpoint)
    values = stored.pop("channel_values", None) or {}
    versions = item.checkpoint.get("channel_versions", {})
    record = Record(
        parent=item.parent_checkpoint_id,
        run_id=str(item.metadata.get("run_id") or ""),
        uses_delta=uses_delta(item.metadata, values),
        refs=tuple((k, str(v)) for k, v in versions.items()),
        checkpoint=saver.serde.dumps_typed(stored),
        metadata=saver.serde.dumps_typed(item.metadata),
    )
    blobs = [
        (blob_field(ns, k, versions[k]), encode_blob(saver.serde.dumps_typed(v)))
        for k, v in values.items()
        if k in versions
    ]
    entries = [
        WriteEntry(w.task_id, w.idx, w.task_path, w.channel, saver.serde.dumps_typed(w.value))
        for w in item.writes
    ]
    key = member(ns, item.checkpoint_id)
    return saver._write(
        item.thread_id,
        cp_mode="nx",
        w_mode="nx",
        checkpoints=[(key, record.encode())],
        blobs=blobs,
        writes=[(key, encode_writes(entries))] if entries else [],
    )


def plan_write_checkpoints(saver: BaseRedisSaver, items: Iterable[StoredCheckpoint]) -> Plan:
    added = writes = 0
    source = iter(items)
    while batch := list(islice(source, WRITE_BATCH)):
        if saver.cluster:  # index first, as put does
            threads = sorted({i.thread_id for i in batch})
            yield [Script("index", saver._index_keys, ("add", saver._ttl_ms, t)) for t in threads]
        replies = yield [_write_op(saver, i) for i in batch]
        for cps, ws in replies:
            added += int(cps)
            writes += int(ws)
    return added, writes


class RedisNativeStore:
    """`NativeStore` over a `RedisSaver`."""

    exact = True

    def __init__(self, saver: RedisSaver) -> None:
        self.saver = saver

    def thread_ids(self) -> Iterator[str]:
        return self.saver._io.iterate(self.saver._plan_thread_ids())

    def read_thread(self, thread_id: str) -> Iterator[ThreadItem]:
        return self.saver._io.iterate(plan_read_thread(self.saver, thread_id))

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return self.saver._io.run(plan_checkpoint_keys(self.saver, thread_id))

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.saver._io.run(plan_write_checkpoints(self.saver, items))


class AsyncRedisNativeStore:
    """`AsyncNativeStore` over an `AsyncRedisSaver`."""

    exact = True

    def __init__(self, saver: AsyncRedisSaver) -> None:
        self.saver = saver

    def thread_ids(self) -> AsyncIterator[str]:
        return self.saver._io.iterate(self.saver._plan_thread_ids())

    def read_thread(self, thread_id: str) -> AsyncIterator[ThreadItem]:
        return self.saver._io.iterate(plan_read_thread(self.saver, thread_id))

    async def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await self.saver._io.run(plan_checkpoint_keys(self.saver, thread_id))

    async def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await self.saver._io.run(plan_write_checkpoints(self.saver, items))
