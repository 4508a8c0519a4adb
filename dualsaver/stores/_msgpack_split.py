"""A checkpoint stored whole (SQLite keeps one msgpack document per checkpoint) split into
its channel values' own bytes, for a target that stores each value apart (PostgreSQL's
blobs) with the same serializer: the values pass through as bytes instead of being decoded
and encoded again.

msgpack is compositional: a value inside a document is encoded exactly as it would be on its
own. So the document is decoded once with an extension hook that builds nothing (each
extension stays its code and payload, an `ormsgpack.Ext`), and each value that goes to a blob is packed
again from that, byte for byte what `JsonPlusSerializer.dumps_typed` wrote for it, at C speed
(no Pydantic model, no `Send` is rebuilt). What the target stores inline (None, str, int,
float, bool, by `isinstance`, as `PostgresSaver.put` decides) and the checkpoint's other
fields are decoded for real; so is any value whose type cannot be told from its bytes (a
lone extension that may rebuild a `str` or `int` subclass, such as an enum), which stays
decoded only when it is one (a datetime, say, keeps its own bytes; the standard library's
types are known by their names without decoding).

The check reads both stores this way when they share a serializer configuration: SQLite's
values split here and PostgreSQL's blobs are the same bytes for the same value
(`dualsaver.checker._bytes`).
"""

from __future__ import annotations

from typing import Any

import ormsgpack

from dualsaver.stores.native import JSONPLUS_EXT_CODES, StoredValue

OPTIONS = ormsgpack.OPT_NON_STR_KEYS  # as JsonPlusSerializer packs and unpacks
EXT_DELTA_SNAPSHOT = 7  # langgraph.checkpoint.serde.jsonplus.EXT_DELTA_SNAPSHOT
# Extensions that never rebuild a str/int/float/bool: Pydantic v1 and v2 models, numpy arrays.
EXT_NEVER_INLINE = frozenset({4, 5, 6})


def keep_ext(code: int, data: bytes) -> ormsgpack.Ext:
    """An extension left as its code and bytes (ValueError: a code the serializer never writes)."""
    if code not in JSONPLUS_EXT_CODES:  # as `check_typed` refuses them
        raise ValueError(f"unknown msgpack extension {code}")
    return ormsgpack.Ext(code, data)  # packs again as written, with no Python call


# The fields LangGraph keeps in a checkpoint beside its channel values, which hold strings,
# numbers and dicts of them only. Any other (`pending_sends`, of `Send`s before v4 and empty
# since) is decoded for real where it holds an extension, and then the whole checkpoint is.
PLAIN_FIELDS = frozenset({"v", "id", "ts", "channel_values", "channel_versions", "versions_seen", "updated_channels"})


def _has_ext(value: Any) -> bool:
    if type(value) is ormsgpack.Ext:
        return True
    if isinstance(value, dict):
        return any(_has_ext(k) or _has_ext(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_ext(v) for v in value)
    return False


def split_checkpoint(data: bytes, serde: Any) -> dict[str, Any]:
    """The checkpoint in `data` (msgpack written by `serde`), its channel values as
    `StoredValue` where they go to blobs. Raises ValueError on bytes that do not decode."""
    document = ormsgpack.unpackb(data, ext_hook=keep_ext, option=OPTIONS)
    if not isinstance(document, dict):
        return document  # not a checkpoint: the caller's checks say so
    values = document.get("channel_values")
    others = () if PLAIN_FIELDS.issuperset(document) else (v for k, v in document.items() if k not in PLAIN_FIELDS)
    if not isinstance(values, dict) or any(_has_ext(v) for v in others):
        return serde.loads_typed(("msgpack", data))
    split = {}
    for channel, value in values.items():  # the backfill's hottest loop: most values are decoded already
        split[channel] = value if type(value) in _DECODED else _channel_value(value, serde)
    document["channel_values"] = split
    return document


_DECODED = frozenset({str, int, float, bool, bytes, type(None)})  # what unpackb builds for a plain value
# where an extension's code sits in its packed bytes, by the first byte: fixext 1-16, ext 8/16/32
_CODE_AT = {0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1, 0xC7: 2, 0xC8: 3, 0xC9: 5}
# The start of what JsonPlusSerializer writes for the standard library's types (an array of
# module, class name, argument(s) and, for a method, its name; `_msgpack_default`), none of
# which is a str, int, float or bool: a channel value that is one goes to a blob without being
# decoded to find out (1.5 us each, most checkpoints carry a datetime or a set).
_NEVER_INLINE_TYPES = {
    "builtins": ("set", "frozenset"), "collections": ("deque",),
    "datetime": ("datetime", "date", "time", "timedelta", "timezone"), "uuid": ("UUID",), "decimal": ("Decimal",),
    "ipaddress": ("IPv4Address", "IPv4Interface", "IPv4Network", "IPv6Address", "IPv6Interface", "IPv6Network"),
    "pathlib": ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"),
    "zoneinfo": ("ZoneInfo",),
}
_NEVER_INLINE_STARTS = tuple(
    bytes([0x90 + items]) + ormsgpack.packb(module) + ormsgpack.packb(name)
    for module, names in _NEVER_INLINE_TYPES.items() for name in names for items in (3, 4)
)


def _channel_value(value: Any, serde: Any) -> Any:
    """A value that is not plain (a container or an extension), as its own bytes (see
    `stored_value`)."""
    return stored_value(ormsgpack.packb(value, option=OPTIONS), serde)


def stored_value(packed: bytes, serde: Any) -> Any:
    """A channel value's msgpack bytes as a store that keeps each value apart is given it: a
    `StoredValue`, or decoded where the target keeps it inline (a primitive, as `put` decides by
    `isinstance`: also a lone extension that rebuilds a str or int subclass, an enum). Said from
    the bytes where they tell (`INLINE_FIRST`, the extension's code, the standard library's
    types by name), decoding only a lone extension of another kind. For the split above, and
    for dualsaver's Redis saver, which keeps every value as such bytes."""
    if packed[0] in INLINE_FIRST:
        return serde.loads_typed(("msgpack", packed))
    if (at := _CODE_AT.get(packed[0])) is not None:
        if packed[at] == EXT_DELTA_SNAPSHOT:
            return StoredValue(("msgpack", packed), snapshot=True)
        if packed[at] not in EXT_NEVER_INLINE and not packed.startswith(_NEVER_INLINE_STARTS, at + 1):
            decoded = serde.loads_typed(("msgpack", packed))  # an enum, say: decide on the real value
            if decoded is None or isinstance(decoded, (str, int, float, bool)):
                return decoded  # inline in the target (a str or int subclass, an enum)
    return StoredValue(("msgpack", packed))  # its own bytes, as for a container


# msgpack's first byte of a value PostgreSQL keeps inline (None, bool, int, float, str, as
# `put` decides by `isinstance`): nil, false, true, fixint, negative fixint, float 32/64,
# (u)int 8-64, fixstr, str 8/16/32
INLINE_FIRST = frozenset(
    [0xC0, 0xC2, 0xC3, 0xCA, 0xCB, *range(0xCC, 0xD4), *range(0x80), *range(0xE0, 0x100),
     *range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB]
)
