"""A checkpoint reduced to one digest of what its store holds, for the check's byte path.

Two stores written through one serializer configuration hold the same bytes for the same
value, whatever their layout: SQLite keeps a checkpoint as one msgpack document, PostgreSQL
its channel values as msgpack blobs beside a JSONB document. msgpack is compositional (a
value inside a document is encoded as it is on its own), so decoding SQLite's document and
PostgreSQL's blobs with an extension hook that builds nothing (each extension stays its code
and payload, `RawExt`) gives one structure for both: the plain fields decoded, every
Pydantic model, message or `Send` still its stored bytes. Its digest, with the metadata and
each pending write's stored (type, bytes), is what `read_threads(..., prints=True)` yields
(`Printed`): nothing is rebuilt, and no value is packed again apart.

One encoding is undone on the way: a set's members are written in the order the writing
process iterated them, which changes with the string hash seed, so the same set in the same
channel version often has other bytes in SQLite's next document than in PostgreSQL's one blob.
The digest takes a set's members sorted (by their bytes).

Equal digests mean equal stored values. Unequal ones do not mean unequal values (a float
written as an integer, an enum a store keeps inline), and a row that does not reduce this
way (another type tag, keys msgpack cannot sort) yields `Unreadable`: the check reads such
threads again decoded, which alone decides what is reported (`dualsaver.checker._bytes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import ormsgpack
from langgraph.checkpoint.base import writes_sort_key

from dualsaver.stores._msgpack_split import OPTIONS, RawExt, _keep
from dualsaver.stores.native import Printed, check_typed, checked

_SORTED = ormsgpack.OPT_SORT_KEYS  # JSONB keeps keys in its own order, msgpack in the writer's


def document(data: bytes) -> Any:
    """msgpack decoded with every extension left as its bytes (`RawExt`); ValueError on
    bytes that do not decode or an extension the serializer never writes."""
    return ormsgpack.unpackb(data, ext_hook=_keep, option=OPTIONS)


EXT_CONSTRUCTOR_SINGLE_ARG = 0  # langgraph.checkpoint.serde.jsonplus: how it writes a set
_SETS = (b"\x93\xa8builtins\xa3set", b"\x93\xa8builtins\xa9frozenset")  # (module, name, members)


def _pack(obj: Any) -> ormsgpack.Ext:
    if not isinstance(obj, RawExt):
        raise TypeError(f"cannot pack {type(obj).__name__}")
    if obj.code == EXT_CONSTRUCTOR_SINGLE_ARG and obj.data.startswith(_SETS):
        module, name, members = document(obj.data)
        members = sorted(members, key=lambda m: ormsgpack.packb(m, default=_pack, option=_SORTED))
        return ormsgpack.Ext(obj.code, ormsgpack.packb((module, name, members), default=_pack, option=_SORTED))
    return ormsgpack.Ext(obj.code, obj.data)


def blob_value(tag: str, data: bytes) -> Any:
    """A value stored apart (PostgreSQL's blob) as it sits inside a whole document."""
    if tag == "msgpack":
        return document(data)
    if tag == "bytes":
        return bytes(data)
    raise ValueError(f"a {tag!r} value is compared decoded")


Write = tuple[str, str, int, str, str, bytes]  # task_id, task_path, idx, channel, type tag, bytes


def printed(
    key: tuple[str, str, str],
    parent: str | None,
    checkpoint: Any,
    metadata: Any,
    writes: Iterable[Write],
    serde_key: Any,
) -> Printed:
    """The digest of one checkpoint as stores hold it (see the module docstring); raises on
    what does not reduce so, for the caller to yield `Unreadable`."""
    checkpoint, metadata = checked(checkpoint, metadata)
    ordered = sorted(writes, key=lambda w: writes_sort_key(w[1], w[0], w[2]))
    for w in ordered:
        check_typed((w[4], w[5]), serde_key)
    data = ormsgpack.packb((parent, checkpoint, metadata, ordered), default=_pack, option=_SORTED)
    return Printed(*key, hashlib.blake2b(data, digest_size=16).digest(), len(ordered))


def with_blobs(inline: Mapping[str, Any], blobs: Iterable[tuple[str, str, bytes]]) -> dict[str, Any]:
    """PostgreSQL's channel values: the inline ones and each (channel, tag, bytes) blob,
    which wins over an inline `true` (the marker `put` leaves for a delta snapshot)."""
    values = dict(inline)
    for channel, tag, data in blobs:
        if tag != "empty":  # as the saver's `_load_blobs` skips it
            values[channel] = blob_value(tag, data)
    return values
