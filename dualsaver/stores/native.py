"""Store-native access: what the backfill and the check read and write below the public API.

The public `CheckpointTuple` carries neither a write's `task_path` nor its `idx`, and
`put_writes` cannot set an idx, so an exact copy needs each backend's own rows. A
`NativeStore` (sync) or `AsyncNativeStore` (async) exposes one store's history as plain
records, decoded with that store's own serializer, so values re-encode through the
target's serializer on the way in and compare by content across serializers.

`native_for(saver)` / `anative_for(saver)` pick the adapter for a saver; a saver with no
native adapter gets the public-API one, whose `exact` is False (copies made through it
may reorder the writes of parallel branches, and the result says so). As with LangGraph's
savers, the async form of each method carries an ``a`` prefix (`aread_thread`).

Stored encodings (optional, for the backfill): asked with `read_thread(t, encoded=True)`, an
adapter that supports it (it has a `serde_key`) also carries each write's stored
`(type, bytes)` in `StoredWrite.typed`, names the serializer that wrote them in
`StoredCheckpoint.encoding`, and may leave `value` as `NOT_DECODED`. A target whose own
`serde_key` equals `encoding` stores those bytes unchanged; any other target re-encodes
`value` (and refuses a value that was not decoded). These fields never take part in
equality, and plain `read_thread(t)` (the check) decodes everything as before.

Stored channel values (for the backfill too): an adapter with `gives_stored_values`, asked with
`read_thread(t, encoded=True, stored_values=True)`, leaves the channel values a target stores
apart as `StoredValue`s (their bytes): SQLite splits its whole checkpoints
(`dualsaver.stores._msgpack_split`), PostgreSQL passes its blobs on, and so does dualsaver's
Redis saver, but for the primitives PostgreSQL keeps inline (`stored_value`). Only a target with
`takes_stored_values` and the same `serde_key` is given such records: PostgreSQL writes them as
blobs, SQLite joins them into its document (`dualsaver.stores._msgpack_join`), dualsaver's Redis
saver stores each as its blob.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol, cast

import orjson
import ormsgpack
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata

from dualsaver.errors import UnreadableRow, describe_error


class _NotDecoded:
    """The `value` of a write read with `encoded=True` whose bytes were not decoded."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_DECODED"


NOT_DECODED: Any = _NotDecoded()


@dataclass(frozen=True, slots=True)
class StoredWrite:
    """One pending write as the store holds it."""

    task_id: str
    task_path: str  # "" where the store does not keep it
    idx: int
    channel: str
    value: Any  # decoded with the store's serializer (NOT_DECODED: see `typed`)
    # the stored (type, bytes), when read with encoded=True; see the module docstring
    typed: tuple[str, bytes] | None = field(default=None, compare=False, repr=False)


# LangGraph's `writes_sort_key(task_path, task_id, idx)` of a StoredWrite, built in C (that
# tuple is the key: tests/test_native_order.py holds the two equal)
WRITE_ORDER = attrgetter("task_path", "task_id", "idx")


def in_write_order(writes: Iterable[StoredWrite]) -> tuple[StoredWrite, ...]:
    """Writes in the order a `StoredCheckpoint` keeps them: LangGraph's `writes_sort_key`
    (task path, task id, idx), whatever order the store returned them in."""
    return tuple(sorted(writes, key=WRITE_ORDER))


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A channel value as its serializer wrote it, not decoded (see the module docstring);
    `snapshot` marks a `DeltaChannel` snapshot."""

    typed: tuple[str, bytes]
    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """One checkpoint with everything a `CheckpointTuple` shows, and what it hides."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: Checkpoint  # decoded; channel_values as the store keeps them for this id
    metadata: CheckpointMetadata
    writes: tuple[StoredWrite, ...]  # in writes_sort_key order: see `in_write_order`
    # `serde_key` of the serializer that wrote the `typed` bytes of this record (None: none)
    encoding: Any = field(default=None, compare=False, repr=False)
    # when the source store will expire it (epoch seconds; a per-key TTL), None: never
    expires_at: float | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.thread_id, self.checkpoint_ns, self.checkpoint_id)


# What JsonPlusSerializer writes: its type tags, and the ext codes of its msgpack.
JSONPLUS_TAGS = frozenset({"null", "bytes", "bytearray", "json", "msgpack"})
JSONPLUS_EXT_CODES = frozenset(range(8))  # EXT_CONSTRUCTOR_SINGLE_ARG .. EXT_DELTA_SNAPSHOT
CHECKPOINT_KEYS = ("id", "channel_versions", "versions_seen")
_CHECKPOINT_KEY_SET = frozenset(CHECKPOINT_KEYS)


def checked(checkpoint: Any, metadata: Any) -> tuple[Checkpoint, CheckpointMetadata]:
    """A decoded checkpoint and its metadata, or `UnreadableRow` if they are not what
    LangGraph writes (garbage can decode to a number: msgpack ignores what follows)."""
    if type(checkpoint) is not dict and not isinstance(checkpoint, Mapping):  # a dict: no ABC check
        raise UnreadableRow(f"checkpoint is not a mapping but {type(checkpoint).__name__}")
    if not checkpoint.keys() >= _CHECKPOINT_KEY_SET:
        missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint]
        raise UnreadableRow(f"checkpoint lacks {', '.join(missing)}")
    values = checkpoint.get("channel_values", {})
    if type(values) is not dict and not isinstance(values, Mapping):
        raise UnreadableRow("checkpoint channel_values is not a mapping")
    if metadata is not None and type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise UnreadableRow(f"metadata is not a mapping but {type(metadata).__name__}")
    # the checks above are the TypedDicts' shape, which isinstance cannot narrow to
    return cast(Checkpoint, checkpoint), cast(CheckpointMetadata, metadata or {})


def check_typed(typed: tuple[str, bytes], key: Any, what: str = "a write") -> tuple[str, bytes]:
    """Stored (type tag, bytes) checked cheaply, before they are decoded or passed through:
    a tag the serializer writes and, for msgpack, a complete structure (values are not
    built: about 1 us a write, against 30 us to decode one); ciphertext, its tag only. `key` is
    the serializer's `serde_key`; an unknown serializer is trusted. `what` names the value in
    the message."""
    tag, data = typed
    if not isinstance(tag, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnreadableRow(f"{what} is not stored as (type tag, bytes)")
    if key is None or key[0] not in ("jsonplus", "encrypted"):
        return typed
    encrypted = ""
    if key[0] == "encrypted":  # LangGraph's EncryptedSerializer: "msgpack+aes", say
        tag, encrypted, _ = tag.partition("+")  # `encrypted`: the "+", where there is one
        key = key[1]  # the key of the serializer under the encryption
    if tag not in JSONPLUS_TAGS and not (tag == "pickle" and key[1]):
        raise UnreadableRow(f"{what} has an unknown type tag {tag[:20]!r}")
    if encrypted:
        return typed  # its bytes are checked by the cipher (its MAC) where they are decrypted
    if tag == "msgpack":
        try:
            ormsgpack.unpackb(data, ext_hook=_check_ext, option=ormsgpack.OPT_NON_STR_KEYS)
        except (ValueError, TypeError) as exc:  # ormsgpack's messages name no data
            raise UnreadableRow(f"{what}'s msgpack does not decode: {str(exc)[:80]}") from None
    return typed


def load_typed(serde: Any, key: Any, typed: tuple[str, bytes], what: str = "a write") -> Any:
    """`serde.loads_typed`; when it fails, `check_typed` names what is wrong in our words
    (the check costs nothing while values decode)."""
    try:
        return serde.loads_typed(typed)
    except Exception:
        check_typed(typed, key, what)
        raise


def stored_write(
    task_id: str, task_path: str, idx: int, channel: str, typed: tuple[str, bytes], serde: Any, key: Any,
    encoding: Any,
) -> StoredWrite:
    """A write as a store read it (`key`: its serializer's `serde_key`): decoded, or with an
    `encoding` (read with `encoded=True`) its stored bytes, checked, not decoded."""
    if encoding is None:
        return StoredWrite(task_id, task_path, idx, channel, load_typed(serde, key, typed))
    return StoredWrite(task_id, task_path, idx, channel, NOT_DECODED, check_typed(typed, encoding))


# a run as long as an integer orjson may read as a float. It also finds a channel version's
# digits in a string, which costs a walk of the value (4 us); a regex that looks only where a
# number token starts costs 15-40 us a document (measured), so the walk stays.
_DIGITS = re.compile(rb"[0-9]{19}")
_INT64 = 2.0**63


def loads_json(data: bytes | str) -> Any:
    """JSON as `json.loads` reads it, through orjson (5x faster) when that gives the same:
    orjson refuses NaN and Infinity (which `json.dumps` writes) and reads an integer beyond 64
    bits as a float, so a document holding such a float (one its text could have written as
    a long integer) goes to `json.loads`."""
    if isinstance(data, str):
        data = data.encode()
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
    if _DIGITS.search(data) is not None and _has_huge_float(value):
        return json.loads(data)
    return value


def _has_huge_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and abs(item) >= _INT64:
            return True
    return False


def _check_ext(code: int, data: bytes) -> None:
    # An extension's payload carries its own length, so truncation shows in the outer
    # structure; its inside is checked when a reader decodes it, not here (4x the cost).
    if code not in JSONPLUS_EXT_CODES:
        raise ValueError(f"unknown msgpack extension {code}")


def typed_value(item: StoredCheckpoint, w: StoredWrite, serde: Any, key: Any) -> tuple[str, bytes]:
    """A write's bytes for a target whose serializer has `serde`/`key`: the stored bytes
    unchanged when the same serializer configuration wrote them, else `value` re-encoded."""
    if w.typed is not None and key is not None and item.encoding == key:
        return w.typed
    if w.value is NOT_DECODED:
        raise ValueError("a write was read without decoding and the target's serializer differs")
    return serde.dumps_typed(w.value)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row that failed to load: reported by the check, never a crash."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    error: str  # exception type and message; never a value or a password

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.thread_id, self.checkpoint_ns, self.checkpoint_id)


ThreadItem = StoredCheckpoint | Unreadable


@dataclass(frozen=True, slots=True)
class Printed:
    """A checkpoint read as one digest of what its store holds (`read_threads(ids,
    prints=True)`, see `dualsaver.stores._prints`): what the check compares first."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    digest: bytes
    writes: int  # how many pending writes it has


def unreadable(thread_id: str, ns: str, checkpoint_id: str, exc: BaseException) -> Unreadable:
    """The row that failed to load, and what failed: our own words for a row that is not what
    LangGraph writes, else the decoder's exception type only (its message may quote the
    undecodable bytes, which may hold conversation content)."""
    what = describe_error(exc) if isinstance(exc, UnreadableRow) else f"{type(exc).__name__} while decoding"
    return Unreadable(thread_id, ns, checkpoint_id, what)


class NativeStore(Protocol):
    """Sync native access to one store.

    - `thread_ids()` yields every thread id once, in ascending order, streaming (no `KEYS`,
      no loading the whole id list when the backend can page).
    - `read_thread(t)` yields every checkpoint of thread `t` in every namespace, ordered by
      (checkpoint_ns, checkpoint_id); a row that fails to decode yields `Unreadable`.
      Adapters with a `serde_key` also take `encoded=True` (see the module docstring).
    - `checkpoint_keys(t)` is the set of (checkpoint_ns, checkpoint_id) the store holds for `t`.
    - `prepare_write(items)` encodes a batch (CPU only, no I/O; it may return the items as
      they are) and `write_prepared(prepared)` inserts what is absent and never overwrites what
      is there (live traffic may have written it); writes are inserted if absent by
      (thread, ns, checkpoint id, task_id, idx). Returns (checkpoints added, writes added).
      `write_checkpoints(items)` is both in one call.
    - `delete_thread(t)` deletes the thread (repair's "replace").
    """

    exact: bool

    def thread_ids(self) -> Iterator[str]: ...

    def read_thread(self, thread_id: str) -> Iterator[ThreadItem]: ...

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]: ...

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> Any: ...

    def write_prepared(self, prepared: Any) -> tuple[int, int]: ...

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]: ...

    def delete_thread(self, thread_id: str) -> None: ...


class AsyncNativeStore(Protocol):
    """The async form of `NativeStore`, same contract, methods prefixed with ``a``
    (`prepare_write` does no I/O and keeps its name)."""

    exact: bool

    def athread_ids(self) -> AsyncIterator[str]: ...

    def aread_thread(self, thread_id: str) -> AsyncIterator[ThreadItem]: ...

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]: ...

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> Any: ...

    async def awrite_prepared(self, prepared: Any) -> tuple[int, int]: ...

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]: ...

    async def adelete_thread(self, thread_id: str) -> None: ...


def shard_of(thread_id: str, shards: int) -> int:
    """The stable shard of a thread: the same on every machine and every run."""
    digest = hashlib.blake2b(thread_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def in_shard(thread_id: str, shard: tuple[int, int] | None) -> bool:
    """True when `thread_id` belongs to `shard` = (index, count); None means all threads."""
    return shard is None or shard_of(thread_id, shard[1]) == shard[0]
