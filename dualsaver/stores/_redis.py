"""Native access to dualsaver's Redis checkpointer for the backfill and the check.

Rows are read and written as the store keeps them, so writes keep their task_path and idx
(exact=True). Each operation is one plan, run through the saver's own executor: blocking for
a `RedisSaver`, awaiting (the ``a`` forms) for an `AsyncRedisSaver`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
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
from dualsaver.stores._msgpack_split import stored_value
from dualsaver.stores._prints import blob_value, document, printed
from dualsaver.stores.faithful import SURROGATE, refuse
from dualsaver.stores.native import (
    Printed,
    StoredCheckpoint,
    StoredValue,
    ThreadItem,
    Unreadable,
    check_typed,
    checked,
    stored_write,
    typed_value,
    unreadable,
)
from dualsaver.stores.serde import Plaintext, plaintext, serde_key

WRITE_BATCH = 100  # checkpoints per pipeline in write_checkpoints
# pages of PAGE checkpoints asked for per round trip by read_threads: each checkpoint comes
# with every blob it names (its whole state), so this bounds the memory of a read
READ_AHEAD = 4
REDIS_SURROGATE = "redis.surrogate"  # the preflight's rule id (dualsaver.preflight.rules)


def _stored(saver: BaseRedisSaver, thread_id: str, item: Any, key: Any, encoding: Any, load: Any) -> ThreadItem:
    """One checkpoint decoded (`key`: the saver's serde key); with an `encoding` (that key), its
    writes keep their stored bytes, not decoded (the backfill passes them through; see
    `dualsaver.stores.native`); `load` loads its channel values (None: the serializer decodes
    them; `_as_stored` keeps their bytes)."""
    ns, checkpoint_id = split_member(item[0])
    try:
        _, _, record, checkpoint, writes = saver._decode(item, load)
        checkpoint, metadata = checked(checkpoint, saver.serde.loads_typed(record.metadata))
        return StoredCheckpoint(
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint_id,
            parent_checkpoint_id=record.parent,
            checkpoint=checkpoint,
            metadata=metadata,
            writes=tuple(
                stored_write(w.task_id, w.task_path, w.idx, w.channel, w.value, saver.serde, key, encoding)
                for w in writes
            ),
            encoding=encoding,
        )
    except Exception as err:  # a row that fails to load is reported, never a crash
        return unreadable(thread_id, ns, checkpoint_id, err)


def _as_stored(typed: tuple[str, bytes], serde: Any, key: Any) -> Any:
    """A blob as a target that keeps each value apart takes it from a store of the same
    serializer configuration: its bytes (`StoredValue`), or decoded where that target keeps the
    value inline (`stored_value`: a primitive, an enum). Checked as a write is, not decoded."""
    tag, data = check_typed(typed, key, "a channel value")
    if tag == "msgpack" and data:
        return stored_value(data, serde)
    if tag in ("bytes", "bytearray"):
        return StoredValue(typed)
    return serde.loads_typed(typed)  # None, and what the serializer no longer writes


Reduced = dict[str, dict[tuple[str, str], Any]]  # a thread's blobs reduced (`blob_value`), by ns, (channel, version)


def _printed(thread_id: str, item: Any, plain: Plaintext, values: Reduced) -> Printed | Unreadable:
    """One checkpoint as a digest of its stored bytes (`dualsaver.stores._prints`), opened by
    `plain` (decrypted where the saver encrypts); `values` holds the thread's blobs already reduced, by
    ns, then (channel, version): every checkpoint names the blob of each of its channels, and
    most of them are its parent's. `item` is a checkpoint of the read script's reply (member,
    record, writes, its blobs in the order of its refs) or, from a whole thread's hashes,
    (member, record, writes, the thread's blobs by field)."""
    raw_member, raw_record, raw_writes, blobs = item
    ns, checkpoint_id = split_member(raw_member)
    try:
        record = Record.decode(raw_record)
        (checkpoint_tag, stored), (metadata_tag, metadata) = map(plain.open, (record.checkpoint, record.metadata))
        if checkpoint_tag != "msgpack" or metadata_tag != "msgpack":
            raise ValueError("a checkpoint not stored as msgpack is compared decoded")
        checkpoint = document(stored)
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
                reduced[ref] = value = _EMPTY if typed[0] == "empty" else blob_value(typed, plain)
            if value is not _EMPTY:
                channel_values[ref[0]] = value
        checkpoint["channel_values"] = channel_values
        writes = [(w[0], w[2], w[1], w[3], *w[4]) for w in decode_writes(raw_writes)]  # as `printed` takes them
        return printed(
            (thread_id, ns, checkpoint_id), record.parent, checkpoint, document(metadata), writes, plain
        )
    except Exception as err:  # the check reads this thread again decoded, which says what is wrong
        return unreadable(thread_id, ns, checkpoint_id, err)


_EMPTY = object()  # a blob the saver wrote for a channel with no value (its "empty" type)
_UNSEEN = object()  # a blob not reduced yet


def plan_read_threads(
    saver: BaseRedisSaver, thread_ids: Sequence[str], key: Any, *, prints: Plaintext | None = None,
    ahead: int = READ_AHEAD, encoded: bool = False, stored_values: bool = False,
) -> Plan:
    """Every checkpoint of the threads listed (`key`: the saver's serde key), thread after
    thread, each in (ns, id) order, decoded (stored bytes kept when `encoded`, and the channel
    values' too with `stored_values`, see `_stored`) or as digests of their stored bytes opened
    by `prints` (the check's byte path): the members of them all in one round trip, then `ahead`
    pages at a time."""
    encoding = key if encoded else None
    load = (lambda typed: _as_stored(typed, saver.serde, key)) if encoded and stored_values else None
    ids = list(dict.fromkeys(thread_ids))
    keys = [saver._keys(t) for t in ids]
    members = yield pipeline(command("ZRANGE", k[0], 0, -1) for k in keys)  # see dualsaver.redis.codec
    # on the byte path a thread of one page is read whole ('dump': its three hashes, each blob
    # once, nothing parsed on the server), else page by page by the read script
    pages = [(t, k, page, prints is not None and len(found) <= PAGE)
             for t, k, found in zip(ids, keys, members) for page in chunks(found, PAGE)]
    values: Reduced = {}  # the current thread's reduced blobs (`_printed`)
    current = None
    for some in chunks(pages, ahead):
        replies = yield pipeline(script("dump", k) if whole else script("read", k, ("ids", *page))
                                 for _, k, page, whole in some)
        for (thread_id, _, _, whole), reply in zip(some, replies):
            if prints is not None:
                if thread_id != current:
                    values, current = {}, thread_id
                items = _dumped(reply) if whole else reply[1]
                yield Emit(tuple(_printed(thread_id, item, prints, values) for item in items))
            else:
                yield Emit(tuple(_stored(saver, thread_id, item, key, encoding, load) for item in reply[1]))


def _dumped(reply: Any) -> list[tuple[Any, Any, Any, dict[bytes, bytes]]]:
    """A whole thread's hashes as the read script's checkpoints, in (ns, id) order, each with
    the thread's blobs by field (see `_printed`)."""
    records, blobs, writes = (dict(pairs(flat)) for flat in reply)
    return [(m, records[m], writes.get(m), blobs) for m in sorted(records)]


def plan_checkpoint_keys(saver: BaseRedisSaver, thread_id: str) -> Plan:
    members = yield command("ZRANGE", saver._keys(thread_id)[0], 0, -1)
    return {split_member(m) for m in members}


def _write_op(saver: BaseRedisSaver, item: StoredCheckpoint, key: Any) -> Call:
    """One checkpoint, its blobs and writes, inserted if absent, encoded as `put` and
    `put_writes` encode them: with the saver's serializer, but for the stored bytes a source
    of the same serializer configuration (`key`) passes on (its channel values as
    `StoredValue`s, its writes' `typed`), which are those bytes already."""
    ns = item.checkpoint_ns
    stored: dict[str, Any] = dict(item.checkpoint)
    values = stored.pop("channel_values", None) or {}
    versions = item.checkpoint.get("channel_versions", {})
    dumps = saver.serde.dumps_typed
    record = Record(
        parent=item.parent_checkpoint_id,
        run_id=str(item.metadata.get("run_id") or ""),
        uses_delta=uses_delta(item.metadata, values)
        or any(type(v) is StoredValue and v.snapshot for v in values.values()),
        refs=tuple((k, str(v)) for k, v in versions.items()),
        checkpoint=dumps(stored),
        metadata=dumps(item.metadata),
    )
    blobs = [
        (blob_field(ns, k, versions[k]), encode_blob(v.typed if type(v) is StoredValue else dumps(v)))
        for k, v in values.items()
        if k in versions
    ]
    entries = [
        WriteEntry(w.task_id, w.idx, w.task_path, w.channel, typed_value(item, w, saver.serde, key))
        for w in item.writes
    ]
    checkpoint_key = member(ns, item.checkpoint_id)
    return saver._write(
        item.thread_id,
        cp_mode="nx",
        w_mode="nx",
        checkpoints=[(checkpoint_key, record.encode())],
        blobs=blobs,
        writes=[(checkpoint_key, encode_writes(entries))] if entries else [],
    )


Prepared = list[tuple[str, Call]]  # a batch encoded (`prepare_write`): (thread id, its write script call)


def prepared_writes(
    saver: BaseRedisSaver, items: Iterable[StoredCheckpoint], key: Any, allowed: Collection[str]
) -> Prepared:
    """The items encoded as the write script's calls (`key`: the saver's serde key; CPU only:
    the backfill's reader does it, while the writer waits for the server), each checked first
    for a lone surrogate in its metadata, which the serializer's msgpack would write as `?`."""
    prepared = []
    for item in items:
        refuse(item.metadata, SURROGATE, "metadata", REDIS_SURROGATE, "the serializer's msgpack", allowed)
        prepared.append((item.thread_id, _write_op(saver, item, key)))
    return prepared


def plan_write_prepared(saver: BaseRedisSaver, prepared: Prepared) -> Plan:
    added = writes = 0
    for start in range(0, len(prepared), WRITE_BATCH):
        batch = prepared[start : start + WRITE_BATCH]
        if saver.cluster:  # index first, as put does
            threads = sorted({thread_id for thread_id, _ in batch})
            yield pipeline(script("index", saver._index_keys, ("add", saver._ttl_ms, t)) for t in threads)
        replies = yield pipeline(call for _, call in batch)
        for cps, ws in replies:
            added += int(cps)
            writes += int(ws)
    return added, writes


class RedisNativeStore:
    """`NativeStore` over a `RedisSaver`, and `AsyncNativeStore` (the ``a`` forms) over an
    `AsyncRedisSaver`."""

    exact = True
    # channel values as their stored bytes (`StoredValue`), to and from a store of the same
    # serializer configuration: each is a blob here (SQLite's split, PostgreSQL's blobs)
    takes_stored_values = gives_stored_values = True

    def __init__(self, saver: BaseRedisSaver) -> None:
        self.saver = saver
        # equal keys: stored bytes pass through a copy (`encoded=True`, `dualsaver.stores.native`)
        self.serde_key = serde_key(saver.serde)
        # and the check compares stored bytes first, decrypted where the serializer encrypts
        # (`read_threads(ids, prints=True)`), where these keys are equal
        self.plaintext = plaintext(saver.serde)
        self.prints_key = self.plaintext.key

    allow_lossy: Collection[str] = ()  # rule classes the writer may convert (see dualsaver.stores.faithful)

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> Prepared:
        return prepared_writes(self.saver, items, self.serde_key, self.allow_lossy)

    def thread_ids(self) -> Iterator[str]:
        return stream(self.saver._plan_thread_ids(), self.saver._io)

    def read_thread(
        self, thread_id: str, *, encoded: bool = False, stored_values: bool = False
    ) -> Iterator[ThreadItem]:
        return stream(self._read([thread_id], False, encoded, stored_values, ahead=1), self.saver._io)

    def read_threads(
        self, thread_ids: Sequence[str], *, prints: bool = False, encoded: bool = False, stored_values: bool = False
    ) -> Iterator[ThreadItem | Printed]:
        return stream(self._read(thread_ids, prints, encoded, stored_values), self.saver._io)

    def _read(self, thread_ids: Sequence[str], prints: bool, encoded: bool, stored_values: bool,
              ahead: int = READ_AHEAD) -> Plan:
        """The plan of both shells' reads (one thread: a page a round trip)."""
        return plan_read_threads(self.saver, thread_ids, self.serde_key, prints=self.plaintext if prints else None,
                                 ahead=ahead, encoded=encoded, stored_values=stored_values)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return run(plan_checkpoint_keys(self.saver, thread_id), self.saver._io)

    def write_prepared(self, prepared: Prepared) -> tuple[int, int]:
        return run(plan_write_prepared(self.saver, prepared), self.saver._io)

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_prepared(self.prepare_write(items))

    def delete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    def athread_ids(self) -> AsyncIterator[str]:
        return astream(self.saver._plan_thread_ids(), self.saver._io)

    def aread_thread(
        self, thread_id: str, *, encoded: bool = False, stored_values: bool = False
    ) -> AsyncIterator[ThreadItem]:
        return astream(self._read([thread_id], False, encoded, stored_values, ahead=1), self.saver._io)

    def aread_threads(
        self, thread_ids: Sequence[str], *, prints: bool = False, encoded: bool = False, stored_values: bool = False
    ) -> AsyncIterator[ThreadItem | Printed]:
        return astream(self._read(thread_ids, prints, encoded, stored_values), self.saver._io)

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await arun(plan_checkpoint_keys(self.saver, thread_id), self.saver._io)

    async def awrite_prepared(self, prepared: Prepared) -> tuple[int, int]:
        return await arun(plan_write_prepared(self.saver, prepared), self.saver._io)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await self.awrite_prepared(self.prepare_write(items))

    async def adelete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)
