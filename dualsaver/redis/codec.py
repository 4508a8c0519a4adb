"""Byte layout of the Redis checkpointer's values (the Lua scripts read the same layout).

Values are framed (``<length>:<bytes>`` back to back) rather than msgpack'd so that the
Lua side can read a record's parent and channel references without a decoder, and binary
payloads (a serializer's bytes, possibly encrypted) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Typed = tuple[str, bytes]  # what serde.dumps_typed returns

SEP = "\0"


def frame(parts: Iterable[bytes]) -> bytes:
    return b"".join(b"%d:%s" % (len(p), p) for p in parts)


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


@dataclass(frozen=True, slots=True)
class Record:
    """One checkpoint as stored: everything but its channel values and writes."""

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
        refs = tuple(
            tuple(r.decode().split(SEP, 1)) for r in parts[4 : 4 + nrefs]
        )
        ctype, cbytes, mtype, mbytes = parts[4 + nrefs : 8 + nrefs]
        return cls(
            parent=parts[0].decode() or None,
            run_id=parts[1].decode(),
            uses_delta=bool(parts[2]),
            refs=refs,  # type: ignore[arg-type]  # pairs: encode joined each (channel, version) with SEP
            checkpoint=(ctype.decode(), cbytes),
            metadata=(mtype.decode(), mbytes),
        )


@dataclass(frozen=True, slots=True)
class WriteEntry:
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

    @property
    def sort_key(self) -> tuple[str, str, int]:
        # writes_sort_key(task_path, task_id, idx), spelled out to stay a pure function.
        return (self.task_path, self.task_id, self.idx)


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
            WriteEntry(
                task_id.decode(),
                int(idx),
                task_path.decode(),
                channel.decode(),
                (kind.decode(), data),
            )
        )
    entries.sort(key=lambda e: e.sort_key)
    return entries
