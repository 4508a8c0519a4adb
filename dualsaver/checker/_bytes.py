"""The check's fast path: when both stores use the same serializer configuration, compare
the bytes they hold, and decode only the threads whose bytes differ.

Two stores written through one serializer configuration (equal `serde_key`s) hold the same
bytes for the same value, once each store's layout is undone: SQLite keeps a checkpoint as
one msgpack document, PostgreSQL its channel values as blobs, and the backfill's splitter
(`dualsaver.stores._msgpack_split`) cuts the document into exactly the blobs PostgreSQL keeps. Read
so (`read_thread(t, encoded=True, stored_values=True)`), a checkpoint is reduced to one hash
of everything the diff compares: parent, the checkpoint's plain fields, each channel value
as its stored bytes (or itself where the store keeps it inline), metadata, and each write as
its stored bytes in write order. Nothing is decoded beyond what each store keeps decoded.

Equal hashes mean equal values (the same bytes decode alike through the same serializer), so
a thread whose hashes all agree is clean. Unequal bytes do not mean unequal values (the
same value may be encoded two ways: a dict's key order, a float written as an integer, an
older library), so such a thread, and a thread with a row that did not read, is read again
decoded and diffed by meaning (`_diff`): only that decides what is reported, and how. The
byte path can therefore only save work, never change a verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import ormsgpack

from dualsaver.checker._diff import ThreadDiff
from dualsaver.checker.canonical import _PACK_OPTIONS, digest
from dualsaver.stores.native import StoredCheckpoint, StoredValue, Unreadable

READ_OPTIONS = {"encoded": True, "stored_values": True}  # how the byte path reads a store
_EXT_STORED = 100  # a value as its serializer wrote it: tag NUL bytes
_EXT_DECODED = 101  # a value the store keeps decoded that msgpack has no plain form for


def reads_bytes(store: Any) -> bool:
    """Whether a native store can hand back its stored bytes (see the module docstring)."""
    return bool(getattr(store, "gives_stored_values", False)) and getattr(store, "serde_key", None) is not None


def compares_bytes(old: Any, new: Any) -> bool:
    """Both stores read as bytes, written through the same serializer configuration."""
    return reads_bytes(old) and reads_bytes(new) and old.serde_key == new.serde_key


def _stored(tag: str, data: bytes) -> Any:
    if tag == "bytes":
        return bytes(data)  # what the store decodes it to, and what a store keeping it inline holds
    return ormsgpack.Ext(_EXT_STORED, tag.encode() + b"\0" + bytes(data))


def _pack_default(value: Any) -> Any:
    if isinstance(value, StoredValue):
        return _stored(*value.typed)
    # A decoded value with no plain msgpack form (an enum a store keeps inline, say): its
    # content digest, which tells it from the plain value it stands for.
    return ormsgpack.Ext(_EXT_DECODED, digest(value).encode())


def byte_print(item: StoredCheckpoint) -> bytes:
    """One hash of what the diff compares of a checkpoint read as bytes."""
    # read with encoded=True (READ_OPTIONS), every write has its `typed` bytes
    writes = [(w.task_id, w.task_path, w.idx, w.channel, *w.typed) for w in item.writes]  # type: ignore[misc]
    data = ormsgpack.packb(
        (item.parent_checkpoint_id, item.checkpoint, item.metadata, writes),
        default=_pack_default,
        option=_PACK_OPTIONS,
    )
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(slots=True)
class ByteSide:
    """One store's view of one thread, as hashes by (checkpoint_ns, checkpoint_id); `failed`
    when a row (or the thread) did not read: the decoded path says what is wrong."""

    prints: dict[tuple[str, str], bytes] = field(default_factory=dict)
    writes: int = 0
    failed: bool = False
    thread_error: str | None = None

    def add(self, item: StoredCheckpoint | Unreadable, capture_values: bool = False) -> None:
        if isinstance(item, Unreadable) or any(w.typed is None for w in item.writes):
            self.failed = True
            return
        try:
            self.prints[(item.checkpoint_ns, item.checkpoint_id)] = byte_print(item)
        except Exception:
            self.failed = True
        self.writes += len(item.writes)


def agreed(thread_id: str, old: ByteSide, new: ByteSide) -> ThreadDiff | None:
    """The clean diff of a thread whose bytes agree in both stores; None: decide it decoded."""
    if old.failed or new.failed or old.thread_error or new.thread_error or old.prints != new.prints:
        return None
    n = len(old.prints)
    return ThreadDiff(thread_id, [], n, n, n, old.writes, new.writes, by_bytes=True)
