"""Canonical form and digests of stored values, so two stores compare by content.

Each store decodes its rows with its own serializer (plain JsonPlus on one side, an
EncryptedSerializer on the other, say). The check then needs a serializer-independent
notion of "the same value": two decoded objects are equal when their canonical forms are.

- `canonical(value)` is a JSON-able, deterministic rendering: dict keys sorted, tuples and
  lists alike (msgpack and JSON both decode a tuple as a list), sets sorted, bytes as
  base64, and every other object tagged with its type (a LangChain message stays a message:
  a store that hands back a plain dict instead is a real difference for the application).
- `digest(value)` is a short sha256 of the same content. It is computed by encoding with a
  fixed msgpack configuration (C speed: the check digests every value of both stores), and
  falls back to hashing `canonical(value)` for what msgpack cannot encode. Equal content
  gives equal digests; the two routes are never mixed for one value.
- Both compare by meaning (`meaning(value)`): an object's serialized form is the object. The
  official Redis saver hands back LangChain objects as their ``{"lc": 1, "type":
  "constructor", ...}`` envelopes and `Send` packets as ``{"__send__": True, "node": ...,
  "arg": ...}`` where other savers hand back the objects; both forms canonicalize and digest
  alike. (A digest looks for the forms in the packed bytes first, so values without them
  pay nothing.)

Reports show digests, never values, unless the operator asks (`--show-values`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import pathlib
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

import ormsgpack

DIGEST_PREFIX = "sha256:"
DIGEST_HEX_CHARS = 16  # 64 bits: plenty to tell two values of one checkpoint apart

# No OPT_NON_STR_KEYS: ormsgpack (1.13) refuses it beside OPT_SORT_KEYS, which made every
# digest take the slow canonical route; a mapping with other keys takes that route alone.
_PACK_OPTIONS = (
    ormsgpack.OPT_SORT_KEYS
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_UUID
    | ormsgpack.OPT_PASSTHROUGH_BIG_INT
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
)
_EXT_TYPED = 1  # payload: (type name, canonical payload)
_EXT_SET = 2  # payload: sorted packed members


def type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- canonical


def canonical(value: Any) -> Any:
    """A JSON-able, deterministic form of `value` (see the module docstring)."""
    return _canon(meaning(value), set())


def canonical_json(value: Any) -> str:
    return json.dumps(
        canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _typed(obj: Any, payload: Any) -> dict[str, Any]:
    return {"$type": type_name(obj), "$value": payload}


def _canon(value: Any, active: set[int]) -> Any:
    if value is None or (isinstance(value, (bool, str)) and type(value) in (bool, str)):
        return value
    if type(value) is int:
        # Beyond 2**53 JSON readers lose precision; keep the digits exact.
        return value if abs(value) < 2**53 else {"$int": str(value)}
    if type(value) is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}

    marker = id(value)
    if marker in active:  # a cycle: say so instead of recursing forever
        return {"$cycle": type_name(value)}
    active.add(marker)
    try:
        return _canon_container(value, active)
    finally:
        active.discard(marker)


def _canon_container(value: Any, active: set[int]) -> Any:
    if type(value) is dict or (isinstance(value, Mapping) and not _is_model(value)):
        items = [(_canon(k, active), _canon(v, active)) for k, v in value.items()]
        if all(isinstance(k, str) for k, _ in items):
            return dict(sorted(items))
        pairs = sorted(([k, v] for k, v in items), key=lambda kv: _sort_key(kv[0]))
        return {"$map": pairs}
    if type(value) in (list, tuple):
        return [_canon(v, active) for v in value]
    if isinstance(value, (set, frozenset)):
        members = [_canon(v, active) for v in value]
        return {"$set": sorted(members, key=_sort_key)}
    payload = typed_payload(value)
    return _typed(value, repr(value) if payload is NO_FORM else _canon(payload, active))


# --------------------------------------------------------------------------- the ladder

NO_FORM: Any = object()  # typed_payload's answer for a value known by its repr only


def typed_payload(value: Any) -> Any:
    """The one ladder, shared by canonical forms and digests: what a value that is not a
    plain container or scalar stands for, as a payload of simpler values (tagged with the
    value's type by the caller). `NO_FORM` when nothing better than its repr is known.

    Equal content must give equal digests and equal canonical forms, so both go through
    here: a type added in one place only would make reports show values that compare equal
    under different digests."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)):  # subclasses
        return _base_value(value)
    if isinstance(value, deque):
        return list(value)
    if _is_model(value):  # pydantic v2 (LangChain messages) and v1
        return value.model_dump() if hasattr(value, "model_dump") else value.dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "_asdict") and callable(value._asdict):  # namedtuple
        return dict(value._asdict())
    if isinstance(value, (list, tuple)):  # other subclasses
        return list(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return [value.days, value.seconds, value.microseconds]
    if isinstance(value, (uuid.UUID, decimal.Decimal, pathlib.PurePath)):
        return str(value)
    if isinstance(value, BaseException):
        return repr(value)  # JsonPlus stores exceptions as their repr
    if hasattr(value, "node") and hasattr(value, "arg"):  # langgraph Send
        return {"node": value.node, "arg": value.arg}
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return state
    slots = _slot_values(value)
    if slots is not None:
        return slots
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return value.tolist()
    return NO_FORM


def _is_model(value: Any) -> bool:
    return (hasattr(value, "model_dump") and callable(value.model_dump)) or (
        hasattr(value, "__fields__") and hasattr(value, "dict") and callable(value.dict)
    )


def _base_value(value: Any) -> Any:
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def _slot_values(value: Any) -> dict[str, Any] | None:
    names = [
        name
        for cls in type(value).__mro__
        for name in getattr(cls, "__slots__", ())
        if isinstance(name, str) and not name.startswith("__")
    ]
    if not names:
        return None
    return {name: getattr(value, name) for name in names if hasattr(value, name)}


def _sort_key(canon: Any) -> str:
    return json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- meaning

_SERIALIZED_MARKERS = (b"constructor", b"__send__")  # in the packed bytes of such forms


def meaning(value: Any) -> Any:
    """`value` with every serialized form of an object replaced by the object: a LangChain
    constructor envelope (lc 1 or 2) by what it constructs (LangGraph's own reviver, its
    allow-list applies; one it refuses stays a dict), a ``__send__`` dict by a `Send`."""
    return _revive(value, set())


def _revive(value: Any, active: set[int]) -> Any:
    kind = type(value)
    if kind not in (dict, list, tuple) or id(value) in active:
        return value
    active.add(id(value))
    try:
        if kind is dict:
            return _object_of({k: _revive(v, active) for k, v in value.items()})
        return kind(_revive(v, active) for v in value)
    finally:
        active.discard(id(value))


def _object_of(form: dict[Any, Any]) -> Any:
    if form.get("__send__") is True and len(form) == 3 and "node" in form and "arg" in form:
        from langgraph.types import Send

        return Send(node=form["node"], arg=form["arg"])
    if form.get("lc") in (1, 2) and form.get("type") == "constructor":
        try:
            revived = _reviver()(form)
        except Exception:
            return form
        return form if revived is None else revived
    return form


_revivers: list[Any] = []


def _reviver() -> Any:
    if not _revivers:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        _revivers.append(JsonPlusSerializer()._reviver)
    return _revivers[0]


# --------------------------------------------------------------------------- digests


def digest(value: Any) -> str:
    """Short content digest of a decoded value: equal content, equal digest."""
    try:
        data = b"m" + ormsgpack.packb(value, default=_pack_default, option=_PACK_OPTIONS)
        if any(marker in data for marker in _SERIALIZED_MARKERS):
            data = b"m" + ormsgpack.packb(meaning(value), default=_pack_default, option=_PACK_OPTIONS)
    except Exception:
        data = b"j" + canonical_json(value).encode("utf-8", "surrogatepass")
    return short_hash(data)


def short_hash(data: bytes) -> str:
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()[:DIGEST_HEX_CHARS]


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, default=_pack_default, option=_PACK_OPTIONS)


def _ext(obj: Any, payload: Any) -> ormsgpack.Ext:
    return ormsgpack.Ext(_EXT_TYPED, _pack((type_name(obj), payload)))


def _pack_default(value: Any) -> Any:
    """Encode what msgpack has no native form for, by the same ladder as `canonical`."""
    if isinstance(value, (set, frozenset)):
        return ormsgpack.Ext(_EXT_SET, b"".join(sorted(_pack(v) for v in value)))
    if type(value) is int:  # beyond 64 bits
        return _ext(value, str(value))
    if isinstance(value, Mapping) and not _is_model(value):
        return dict(value)  # OrderedDict, defaultdict: a dict to the application
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    payload = typed_payload(value)
    if payload is NO_FORM:
        raise TypeError(type_name(value))  # the caller falls back to the canonical route
    return _ext(value, payload)
