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
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata

from dualsaver.errors import describe_error


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


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """One checkpoint with everything a `CheckpointTuple` shows, and what it hides."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: Checkpoint  # decoded; channel_values as the store keeps them for this id
    metadata: CheckpointMetadata
    writes: tuple[StoredWrite, ...]  # in writes_sort_key order: (task_path, task_id, idx)
    # `serde_key` of the serializer that wrote the `typed` bytes of this record (None: none)
    encoding: Any = field(default=None, compare=False, repr=False)
    # when the source store will expire it (epoch seconds; a per-key TTL), None: never
    expires_at: float | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.thread_id, self.checkpoint_ns, self.checkpoint_id)


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


def unreadable(thread_id: str, ns: str, checkpoint_id: str, exc: BaseException) -> Unreadable:
    return Unreadable(thread_id, ns, checkpoint_id, describe_error(exc))


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
