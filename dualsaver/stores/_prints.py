"""A checkpoint reduced to one digest of what its store holds, for the check's byte path.

Two stores written through one serializer configuration hold the same bytes for the same
value, whatever their layout. PostgreSQL keeps each channel value a checkpoint does not hold
inline as a blob, once per (channel, version), beside a JSONB document; SQLite keeps one
msgpack document per checkpoint, every value inside it. msgpack is compositional (a value
inside a document is encoded as it is on its own: `dualsaver.stores._msgpack_split`), so
each value a target keeps apart reduces to the digest of its type tag and bytes
(`value_digest`): of a blob as read, once per blob however many checkpoints name it; of a
value in SQLite's document packed again from the document decoded with every extension left
as its bytes (`ormsgpack.Ext`: nothing rebuilt). A checkpoint's digest (`printed`) covers its
parent, plain fields, channel values (inline ones as they are, the rest as their digests),
metadata and each pending write's stored (type, bytes). `read_threads(ids, prints=True)`
yields one `Printed` per checkpoint.

One encoding is undone on the way: a set's members are written in the order the writing
process iterated them, which changes with the string hash seed, so the same set in the same
channel version often has other bytes in SQLite's next document than in PostgreSQL's one
blob, and a copy that decodes a pending write and encodes it again (dualsaver's Redis
writer does) may reorder one. A value or a write holding a set is digested with the set's
members sorted (by their bytes).

An encrypted store's values are digested as their plaintext (`serde.Plaintext`): decrypted
with the store's own cipher, so a store written through LangGraph's `EncryptedSerializer`
over the default serializer compares by bytes with a plain one.

dualsaver's Redis saver keeps every channel value as a blob, primitives too: `blob_value`
reduces each as PostgreSQL keeps it (a primitive inline, the rest as its digest), so SQLite,
PostgreSQL and that saver compare with one another.

Equal digests mean equal stored values, each checked as a store reads it (a blob as
`check_typed` checks a write, once; SQLite's document by decoding it). Unequal ones do not
mean unequal values (a float written as an integer, an enum a store keeps inline), and a row
that does not reduce this way (another type tag, an extension in a field that holds none)
yields `Unreadable`: the check reads such threads again decoded, which alone decides what
is reported (`dualsaver.checker._bytes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

import ormsgpack

from dualsaver.stores._msgpack_split import INLINE_FIRST, OPTIONS, keep_ext
from dualsaver.stores.native import Printed, check_typed, checked
from dualsaver.stores.serde import Plaintext

_SORTED = ormsgpack.OPT_SORT_KEYS  # JSONB keeps keys in its own order, msgpack in the writer's
_VALUE = 100  # ext code of a channel value kept apart, in a checkpoint's digest: its own digest
EXT_CONSTRUCTOR_SINGLE_ARG = 0  # langgraph.checkpoint.serde.jsonplus: how it writes a set
_SETS = (b"\x93\xa8builtins\xa3set", b"\x93\xa8builtins\xa9frozenset")  # (module, name, members)
_SET_MARKS = (b"\xa8builtins\xa3set", b"\xa8builtins\xa9frozenset")  # the same, found anywhere


def document(data: bytes) -> Any:
    """msgpack decoded with every extension left as its code and bytes (an `ormsgpack.Ext`,
    which packs again as written with no Python call); a set's members sorted by their bytes.
    ValueError on bytes that do not decode or an extension the serializer never writes."""
    return ormsgpack.unpackb(data, ext_hook=_kept, option=OPTIONS)


def _kept(code: int, data: bytes) -> ormsgpack.Ext:
    """The split's extension hook (`_msgpack_split`), a set's members sorted first."""
    if code == EXT_CONSTRUCTOR_SINGLE_ARG and data.startswith(_SETS):
        module, name, members = document(data)  # nested sets sorted first, by the same hook
        data = _packed((module, name, sorted(members, key=_packed)))
    return keep_ext(code, data)


def _packed(value: Any) -> bytes:
    """A value decoded by `document` packed again: its stored bytes, sets' members sorted."""
    return ormsgpack.packb(value, option=OPTIONS)


# a hasher per type tag a value kept apart may have, copied for each value (half the cost of
# making one with its `person` each time)
_HASHERS = {tag: hashlib.blake2b(digest_size=16, person=tag.encode()) for tag in ("msgpack", "bytes")}


def _digest(tag: str, data: bytes) -> ormsgpack.Ext:
    hasher = _HASHERS[tag].copy()
    hasher.update(data)
    return ormsgpack.Ext(_VALUE, hasher.digest())


def _sets_sorted(tag: str, data: bytes) -> bytes:
    """Stored bytes with every set's members sorted (see the module docstring)."""
    if tag == "msgpack" and (_SET_MARKS[0] in data or _SET_MARKS[1] in data):  # two searches in C: a third of any()
        return _packed(document(data))
    return data


def value_digest(typed: tuple[str, bytes], plain: Plaintext) -> ormsgpack.Ext:
    """A channel value kept apart (PostgreSQL's blob), as the digest of its stored (tag,
    bytes), opened (`plain`: decrypted where the store encrypts) and checked as `check_typed`
    checks a write (ValueError: the check decodes it)."""
    return _opened_digest(*plain.open(typed), plain.key)


def _opened_digest(tag: str, data: bytes, key: Any) -> ormsgpack.Ext:
    check_typed((tag, data), key, "a channel value")
    if tag not in ("msgpack", "bytes"):
        raise ValueError(f"a {tag!r} value is compared decoded")
    return _digest(tag, _sets_sorted(tag, data))


def blob_value(typed: tuple[str, bytes], plain: Plaintext) -> Any:
    """A channel value a store keeps apart whatever its type (dualsaver's Redis saver keeps
    every one as a blob), as PostgreSQL would keep it: a primitive decoded, inline; the rest
    as `value_digest`."""
    tag, data = plain.open(typed)
    if tag == "null":
        return None
    if tag == "msgpack" and data and data[0] in INLINE_FIRST:
        return document(data)
    return _opened_digest(tag, data, plain.key)


def document_values(values: Any) -> dict[str, Any]:
    """The channel values of a whole document (SQLite's), each as PostgreSQL would keep it:
    a primitive inline (as `put` decides, by `isinstance`), the rest as its digest."""
    if not isinstance(values, dict):
        raise ValueError("channel_values is not a mapping")
    out: dict[str, Any] = {}
    for channel, value in values.items():
        if value is None or isinstance(value, (str, int, float, bool)):
            out[channel] = value
        elif isinstance(value, bytes):
            out[channel] = _digest("bytes", value)
        else:
            out[channel] = _digest("msgpack", _packed(value))
    return out


Write = tuple[str, str, int, str, str, bytes]  # task_id, task_path, idx, channel, type tag, bytes
_WRITE_ORDER = itemgetter(1, 0, 2)  # a Write's `writes_sort_key` (task_path, task_id, idx), in C


def printed(
    key: tuple[str, str, str],
    parent: str | None,
    checkpoint: Any,
    metadata: Any,
    writes: Iterable[Write],
    plain: Plaintext,
) -> Printed:
    """The digest of one checkpoint whose channel values are already inline or digests (see
    the module docstring), its writes' stored bytes opened by `plain`; raises on what does not
    reduce so, for the caller to yield `Unreadable`."""
    checkpoint, metadata = checked(checkpoint, metadata)
    ordered = sorted(writes, key=_WRITE_ORDER)
    for n, w in enumerate(ordered):
        tag, data = check_typed(plain.open((w[4], w[5])), plain.key)
        if (data := _sets_sorted(tag, data)) is not w[5]:  # decrypted, or a set's members sorted
            ordered[n] = (*w[:4], tag, data)
    data = ormsgpack.packb((parent, checkpoint, metadata, ordered), option=_SORTED)
    return Printed(*key, hashlib.blake2b(data, digest_size=16).digest(), len(ordered))
