"""A checkpoint whose channel values come as their stored bytes (PostgreSQL's blobs,
`StoredValue`) joined into one msgpack document, for a target that keeps whole checkpoints
(SQLite) with the same serializer: the inverse of `dualsaver.stores._msgpack_split`.

msgpack is compositional (a value inside a document is encoded exactly as it is on its own), so
the document is the serializer's encoding of the checkpoint with its channel values left out,
and the channel values' map spliced in where the empty one stands: each stored value's bytes as
they are, nothing decoded (decoding a blob rebuilds its messages, most of a copy's time out of
PostgreSQL). It decodes to what `serde.dumps_typed(checkpoint)` of the decoded values gives.
Anything this does not cover (another serializer, a value stored under another type tag, a
document where the splice point is not unique) is decoded and encoded whole, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ormsgpack

from dualsaver.stores._msgpack_split import OPTIONS
from dualsaver.stores.native import StoredValue

_EMPTY_VALUES = ormsgpack.packb("channel_values") + ormsgpack.packb({})  # the key, then an empty map


def joined(checkpoint: Mapping[str, Any], serde: Any, serde_key: Any) -> tuple[str, bytes]:
    """`serde.dumps_typed(checkpoint)`, its `StoredValue`s taken as the bytes they hold."""
    values = checkpoint.get("channel_values")
    if not isinstance(values, dict) or not any(type(v) is StoredValue for v in values.values()):
        return serde.dumps_typed(checkpoint)
    if serde_key is not None and serde_key[0] == "jsonplus":
        tag, data = serde.dumps_typed({**checkpoint, "channel_values": {}})
        parts = [_map_header(len(values))]
        for channel, value in values.items():
            packed = _packed(value, serde)
            if packed is None:
                break
            parts += (ormsgpack.packb(channel, option=OPTIONS), packed)
        else:
            if tag == "msgpack" and data.count(_EMPTY_VALUES) == 1:
                return tag, data.replace(_EMPTY_VALUES, _EMPTY_VALUES[:-1] + b"".join(parts))
    decoded = {k: serde.loads_typed(v.typed) if type(v) is StoredValue else v for k, v in values.items()}
    return serde.dumps_typed({**checkpoint, "channel_values": decoded})


def _packed(value: Any, serde: Any) -> bytes | None:
    """A channel value as it stands inside the document; None: it is decoded instead."""
    if type(value) is StoredValue:
        tag, data = value.typed
        if tag == "msgpack":
            return bytes(data)
        if tag == "bytes":
            return ormsgpack.packb(bytes(data))
        return None
    if value is None or type(value) in (str, int, float, bool):  # exactly these: what PostgreSQL keeps inline
        try:
            return ormsgpack.packb(value, option=OPTIONS)
        except TypeError:  # an integer beyond 64 bits: as the serializer writes it
            return None
    return None


def _map_header(size: int) -> bytes:
    if size < 16:
        return bytes([0x80 | size])
    if size < 2**16:
        return b"\xde" + size.to_bytes(2, "big")
    return b"\xdf" + size.to_bytes(4, "big")
