"""Byte layout of the Redis checkpointer's values (the Lua scripts read the same layout).

Values are framed (``<length>:<bytes>`` back to back) rather than msgpack'd so that the
Lua side can read a record's parent and channel references without a decoder, and binary
payloads (a serializer's bytes, possibly encrypted) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import NamedTuple

Typed = tuple[str, bytes]  # what serde.dumps_typed returns

SEP = "\0"


def frame(parts: Iterable[bytes]) -> bytes:
    return b"".join([b"%d:%s" % (len(p), p) for p in parts])  # a list joins faster than a generator


def unframe(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        colon = data.index(b":", pos)
        start = colon + 1
        stop = start + int(data[pos:colon])
        out.append(data[start:stop])
        pos = stop
    return out


def member(checkpoint_ns: str, checkpoint_id: str) -> str:
    """A checkpoint's name inside its thread; sorts by (ns, id) since ns holds no NUL."""
    return f"{checkpoint_ns}{SEP}{checkpoint_id}"


def split_member(raw: bytes | str) -> tuple[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ns, _, checkpoint_id = text.partition(SEP)
    return ns, checkpoint_id


def blob_field(checkpoint_ns: str, channel: str, version: object) -> str:
    return f"{checkpoint_ns}{SEP}{channel}{SEP}{version}"


def encode_blob(typed: Typed) -> bytes:
    return typed[0].encode() + b"\0" + typed[1]


def decode_blob(raw: bytes) -> Typed:
    kind, _, data = raw.partition(b"\0")
    return kind.decode(), data


class Record(NamedTuple):
    """One checkpoint as stored: everything but its channel values and writes. (Named
    tuples, not dataclasses, here and for `WriteEntry`: a read builds one a checkpoint and
    one a write, and a frozen dataclass takes twice as long to build.)"""

    parent: str | None
    run_id: str
    uses_delta: bool
    refs: tuple[tuple[str, str], ...]  # (channel, version) of channel_versions
    checkpoint: Typed
    metadata: Typed

    def encode(self) -> bytes:
        return frame(
            [
                (self.parent or "").encode(),
                self.run_id.encode(),
                b"1" if self.uses_delta else b"",
                str(len(self.refs)).encode(),
                *(f"{c}{SEP}{v}".encode() for c, v in self.refs),
                self.checkpoint[0].encode(),
                self.checkpoint[1],
                self.metadata[0].encode(),
                self.metadata[1],
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        parts = unframe(raw)
        nrefs = int(parts[3])
        refs = tuple(_ref(r) for r in parts[4 : 4 + nrefs])
        ctype, cbytes, mtype, mbytes = parts[4 + nrefs : 8 + nrefs]
        return cls(
            parts[0].decode() or None, parts[1].decode(), bool(parts[2]), refs, (ctype.decode(), cbytes),
            (mtype.decode(), mbytes),
        )


def _ref(raw: bytes) -> tuple[str, str]:
    """A (channel, version) reference as `Record.encode` joined it."""
    channel, sep, version = raw.decode().partition(SEP)
    if not sep:
        raise ValueError("a channel reference without its version")
    return channel, version


class WriteEntry(NamedTuple):
    """One pending write as stored, value still encoded."""

    task_id: str
    idx: int
    task_path: str
    channel: str
    value: Typed

    def encode(self) -> bytes:
        return frame(
            [
                self.task_id.encode(),
                str(self.idx).encode(),
                self.task_path.encode(),
                self.channel.encode(),
                self.value[0].encode(),
                self.value[1],
            ]
        )


# writes_sort_key (task_path, task_id, idx) of a WriteEntry, spelled out to stay a pure
# function, in C
_WRITE_ORDER = itemgetter(2, 0, 1)


def encode_writes(entries: Sequence[WriteEntry]) -> bytes:
    return frame(e.encode() for e in entries)


def decode_writes(raw: bytes | None) -> list[WriteEntry]:
    """Entries of one checkpoint, in writes_sort_key order."""
    if not raw:
        return []
    entries = []
    for body in unframe(raw):
        task_id, idx, task_path, channel, kind, data = unframe(body)
        entries.append(
            WriteEntry(task_id.decode(), int(idx), task_path.decode(), channel.decode(), (kind.decode(), data))
        )
    entries.sort(key=_WRITE_ORDER)
    return entries
