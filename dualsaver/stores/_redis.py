"""Native access to dualsaver's Redis checkpointer for the backfill and the check.

Rows are read and written as the store keeps them, so writes keep their task_path and idx
(exact=True). Each operation is one plan, run through the saver's own executor: blocking for
a `RedisSaver`, awaiting (the ``a`` forms) for an `AsyncRedisSaver`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from dualsaver.redis.base import BaseRedisSaver, uses_delta
from dualsaver.redis.codec import (
    Record,
    WriteEntry,
    blob_field,
    decode_blob,
    decode_writes,
    encode_blob,
    encode_writes,
    member,
    split_member,
)
from dualsaver.redis.ops import PAGE, chunks, command, pairs, pipeline, script
from dualsaver.sansio import Call, Emit, Plan, arun, astream, run, stream
from dualsaver.stores._prints import blob_value, document, printed
from dualsaver.stores.faithful import SURROGATE, refuse
from dualsaver.stores.native import (
    Printed,
    StoredCheckpoint,
    StoredWrite,
    ThreadItem,
    Unreadable,
    checked,
    load_typed,
    unreadable,
)
from dualsaver.stores.serde import serde_key

WRITE_BATCH = 100  # checkpoints per pipeline in write_checkpoints
# pages of PAGE checkpoints asked for per round trip by read_threads: each checkpoint comes
# with every blob it names (its whole state), so this bounds the memory of a read
READ_AHEAD = 4
REDIS_SURROGATE = "redis.surrogate"  # the preflight's rule id (dualsaver.preflight.rules)


def _stored(saver: BaseRedisSaver, thread_id: str, item: Any) -> ThreadItem:
    ns, checkpoint_id = split_member(item[0])
    key = serde_key(saver.serde)
    try:
        _, _, record, checkpoint, writes = saver._decode(item)
        checkpoint, metadata = checked(checkpoint, saver.serde.loads_typed(record.metadata))
        return StoredCheckpoint(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint_id,
            parent_checkpoint_id=record.parent,
            checkpoint=checkpoint,
            metadata=metadata,
            writes=tuple(
                StoredWrite(w.task_id, w.task_path, w.idx, w.channel, load_typed(saver.serde, key, w.value))
                for w in writes
            ),
        )
    except Exception as err:  # a row that fails to load is reported, never a crash
        return unreadable(thread_id, ns, checkpoint_id, err)


def plan_read_thread(saver: BaseRedisSaver, thread_id: str) -> Plan:
    """Every checkpoint of one thread, decoded, a page a round trip."""
    return plan_read_threads(saver, (thread_id,), prints=False, ahead=1)


Reduced = dict[str, dict[tuple[str, str], Any]]  # a thread's blobs reduced (`blob_value`), by ns, (channel, version)


def _printed(thread_id: str, item: Any, key: Any, values: Reduced) -> Printed | Unreadable:
    """One checkpoint as a digest of its stored bytes (`dualsaver.stores._prints`), written
    with the serializer `key` names; `values` holds the thread's blobs already reduced, by
    ns, then (channel, version): every checkpoint names the blob of each of its channels, and
    most of them are its parent's. `item` is a checkpoint of the read script's reply (member,
    record, writes, its blobs in the order of its refs) or, from a whole thread's hashes,
    (member, record, writes, the thread's blobs by field)."""
    raw_member, raw_record, raw_writes, blobs = item
    ns, checkpoint_id = split_member(raw_member)
    try:
        record = Record.decode(raw_record)
        if record.checkpoint[0] != "msgpack" or record.metadata[0] != "msgpack":
            raise ValueError("a checkpoint not stored as msgpack is compared decoded")
        checkpoint = document(record.checkpoint[1])
        if not isinstance(checkpoint, dict):
            raise ValueError("the checkpoint is not a mapping")
        reduced = values.setdefault(ns, {})
        channel_values = {}
        for n, ref in enumerate(record.refs):
            if (value := reduced.get(ref, _UNSEEN)) is _UNSEEN:
                raw = blobs.get(blob_field(ns, *ref).encode()) if isinstance(blobs, dict) else blobs[n]
                if raw is None:  # as the saver reads it: a version with no blob has no value
                    continue
                typed = decode_blob(raw)
                reduced[ref] = value = _EMPTY if typed[0] == "empty" else blob_value(*typed, key)
            if value is not _EMPTY:
                channel_values[ref[0]] = value
        checkpoint["channel_values"] = channel_values
        writes = [(w[0], w[2], w[1], w[3], *w[4]) for w in decode_writes(raw_writes)]  # as `printed` takes them
        return printed(
            (thread_id, ns, checkpoint_id), record.parent, checkpoint, document(record.metadata[1]), writes, key
        )
    except Exception as err:  # the check reads this thread again decoded, which says what is wrong
        return unreadable(thread_id, ns, checkpoint_id, err)


_EMPTY = object()  # a blob the saver wrote for a channel with no value (its "empty" type)
_UNSEEN = object()  # a blob not reduced yet


def plan_read_threads(saver: BaseRedisSaver, thread_ids: Sequence[str], prints: bool, ahead: int = READ_AHEAD) -> Plan:
    """Every checkpoint of the threads listed, thread after thread, each in (ns, id) order,
    decoded or as digests of their stored bytes (`prints`: the check's byte path): the
    members of them all in one round trip, then `ahead` pages at a time."""
    ids = list(dict.fromkeys(thread_ids))
    keys = [saver._keys(t) for t in ids]
    members = yield pipeline(command("ZRANGE", k[0], 0, -1) for k in keys)  # see dualsaver.redis.codec
    # on the byte path a thread of one page is read whole ('dump': its three hashes, each blob
    # once, nothing parsed on the server), else page by page by the read script
    pages = [(t, k, page, prints and len(found) <= PAGE)
             for t, k, found in zip(ids, keys, members) for page in chunks(found, PAGE)]
    values: Reduced = {}  # the current thread's reduced blobs (`_printed`)
    current, key = None, serde_key(saver.serde)
    for some in chunks(pages, ahead):
        replies = yield pipeline(script("dump", k) if whole else script("read", k, ("ids", *page))
                                 for _, k, page, whole in some)
        for (thread_id, _, _, whole), reply in zip(some, replies):
            if prints:
                if thread_id != current:
                    values, current = {}, thread_id
                items = _dumped(reply) if whole else reply[1]
                yield Emit(tuple(_printed(thread_id, item, key, values) for item in items))
            else:
                yield Emit(tuple(_stored(saver, thread_id, item) for item in reply[1]))


def _dumped(reply: Any) -> list[tuple[Any, Any, Any, dict[bytes, bytes]]]:
    """A whole thread's hashes as the read script's checkpoints, in (ns, id) order, each with
    the thread's blobs by field (see `_printed`)."""
    records, blobs, writes = (dict(pairs(flat)) for flat in reply)
    return [(m, records[m], writes.get(m), blobs) for m in sorted(records)]


def plan_checkpoint_keys(saver: BaseRedisSaver, thread_id: str) -> Plan:
    members = yield command("ZRANGE", saver._keys(thread_id)[0], 0, -1)
    return {split_member(m) for m in members}


def _write_op(saver: BaseRedisSaver, item: StoredCheckpoint) -> Call:
    """One checkpoint, its blobs and writes, inserted if absent (re-encoded with our serde)."""
    ns = item.checkpoint_ns
    stored: dict[str, Any] = dict(item.checkpoint)
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
            yield pipeline(script("index", saver._index_keys, ("add", saver._ttl_ms, t)) for t in threads)
        replies = yield pipeline(_write_op(saver, i) for i in batch)
        for cps, ws in replies:
            added += int(cps)
            writes += int(ws)
    return added, writes


class RedisNativeStore:
    """`NativeStore` over a `RedisSaver`, and `AsyncNativeStore` (the ``a`` forms) over an
    `AsyncRedisSaver`."""

    exact = True

    def __init__(self, saver: BaseRedisSaver) -> None:
        self.saver = saver
        # equal keys: the check compares stored bytes first (`read_threads(ids, prints=True)`)
        self.prints_key = serde_key(saver.serde)

    allow_lossy: Collection[str] = ()  # rule classes the writer may convert (see dualsaver.stores.faithful)

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> list[StoredCheckpoint]:
        """The items (encoded per checkpoint as the script calls are built), each checked for
        a lone surrogate in its metadata, which the serializer's msgpack would write as `?`."""
        items = list(items)
        for item in items:
            refuse(item.metadata, SURROGATE, "metadata", REDIS_SURROGATE, "the serializer's msgpack", self.allow_lossy)
        return items

    def thread_ids(self) -> Iterator[str]:
        return stream(self.saver._plan_thread_ids(), self.saver._io)

    def read_thread(self, thread_id: str) -> Iterator[ThreadItem]:
        return stream(plan_read_thread(self.saver, thread_id), self.saver._io)

    def read_threads(self, thread_ids: Sequence[str], *, prints: bool = False) -> Iterator[ThreadItem | Printed]:
        return stream(plan_read_threads(self.saver, thread_ids, prints), self.saver._io)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return run(plan_checkpoint_keys(self.saver, thread_id), self.saver._io)

    def write_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return run(plan_write_checkpoints(self.saver, items), self.saver._io)

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_prepared(self.prepare_write(items))

    def delete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    def athread_ids(self) -> AsyncIterator[str]:
        return astream(self.saver._plan_thread_ids(), self.saver._io)

    def aread_thread(self, thread_id: str) -> AsyncIterator[ThreadItem]:
        return astream(plan_read_thread(self.saver, thread_id), self.saver._io)

    def aread_threads(self, thread_ids: Sequence[str], *, prints: bool = False) -> AsyncIterator[ThreadItem | Printed]:
        return astream(plan_read_threads(self.saver, thread_ids, prints), self.saver._io)

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await arun(plan_checkpoint_keys(self.saver, thread_id), self.saver._io)

    async def awrite_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return await arun(plan_write_checkpoints(self.saver, items), self.saver._io)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await self.awrite_prepared(self.prepare_write(items))

    async def adelete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)
