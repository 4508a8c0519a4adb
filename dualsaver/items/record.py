"""One long-term-store item as a store holds it, below the public API.

`StoredItem` carries what `BaseStore.put` cannot set: the source's `created_at` and
`updated_at`, its TTL (`expires_at` and the minutes it is refreshed by) and its vectors per
indexed field. `BadItem` is a row that does not decode (a value that is not JSON): it names
its namespace and key, and is reported, never copied.

Items stream in one order in every adapter: ascending (namespace text, key), the namespace
text being LangGraph's own dotted form (labels may not contain a period, so it is one-to-one),
compared by code point (SQLite's BINARY, PostgreSQL's ``COLLATE "C"``, Python's `<`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, overload

from dualsaver.stores import in_shard
from dualsaver.stores.faithful import has_surrogate

Namespace = tuple[str, ...]
ItemKey = tuple[Namespace, str]


def ns_text(namespace: Sequence[str]) -> str:
    return ".".join(namespace)


def holdable(key: ItemKey) -> bool:
    """Whether a store that keeps text as UTF-8 (every one but the in-memory store) can hold
    an item under `key`: none of its parts has a lone surrogate. Such an item is absent from
    it (its backfill reports it as bad), so asking for it is answered, not an encoding error."""
    namespace, name = key
    return not has_surrogate(name) and not any(has_surrogate(label) for label in namespace)


def ns_tuple(text: str) -> Namespace:
    return tuple(text.split(".")) if text else ()


def journal_ns(namespace: Sequence[str]) -> str:
    """How the journal names an item's namespace (its `checkpoint_ns` column)."""
    import json

    return json.dumps(list(namespace))


@overload
def utc(value: None) -> None: ...


@overload
def utc(value: datetime | str | bytes | float) -> datetime: ...


def utc(value: Any) -> datetime | None:
    """A timestamp as an aware UTC datetime: a datetime (naive means UTC, as SQLite's
    CURRENT_TIMESTAMP), an ISO text, or a number of seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def from_micros(micros: int | float) -> datetime:
    """Microseconds since the epoch, exactly (a float division may be off by one)."""
    return EPOCH + timedelta(microseconds=int(micros))


def to_micros(at: datetime) -> int:
    return (at - EPOCH) // MICROSECOND


def sql_time(value: datetime | None) -> str | None:
    """A timestamp as SQLite's text: naive UTC, microseconds only when there are some, so
    a time written by CURRENT_TIMESTAMP reads back as the very same text."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")


@dataclass(slots=True)
class StoredItem:
    namespace: Namespace
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    ttl_minutes: float | None = None
    vectors: dict[str, list[float]] | None = field(default=None)

    @property
    def ident(self) -> ItemKey:
        return (self.namespace, self.key)

    @property
    def order(self) -> tuple[str, str]:
        return (ns_text(self.namespace), self.key)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class BadItem:
    """A stored row that does not decode; reported by namespace and key."""

    namespace: Namespace
    key: str
    error: str

    @property
    def ident(self) -> ItemKey:
        return (self.namespace, self.key)

    @property
    def order(self) -> tuple[str, str]:
        return (ns_text(self.namespace), self.key)


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What a store's semantic index covers: its dimensions and the fields embedded."""

    dims: int
    fields: tuple[str, ...]

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> IndexInfo | None:
        if not config:
            return None
        tokenized = config.get("__tokenized_fields")  # what the store really embeds (SQLite's
        # reads `text_fields`, not `fields`)
        fields = [path for path, _ in tokenized] if tokenized else (config.get("fields") or ["$"])
        if isinstance(fields, str):
            fields = [fields]
        return cls(int(config["dims"]), tuple(fields))


def vectors_pass(source: IndexInfo | None, target: IndexInfo | None) -> bool:
    """Whether stored vectors may be copied as they are: both stores index the same fields
    with the same dimensions."""
    return source is not None and source == target


@dataclass(frozen=True, slots=True)
class Selection:
    """Which items a run covers: under a namespace prefix, in one shard (by namespace)."""

    prefix: Namespace = ()
    shard: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.shard is not None and not (self.shard[1] >= 1 and 0 <= self.shard[0] < self.shard[1]):
            raise ValueError(f"bad shard {self.shard[0]}/{self.shard[1]}: need 0 <= index < count")

    def covers(self, namespace: Namespace) -> bool:
        if namespace[: len(self.prefix)] != self.prefix:
            return False
        return in_shard(ns_text(namespace), self.shard)


EVERYTHING = Selection()  # every namespace, no shard


def prefix_bounds(prefix: Namespace) -> tuple[str, str, str] | None:
    """The namespace text itself, and the half-open text range of those below it: labels
    follow the prefix after a '.', and '/' is the code point after '.'."""
    if not prefix:
        return None
    text = ns_text(prefix)
    return text, text + ".", text + "/"


def vectors_close(a: Mapping[str, Sequence[float]] | None, b: Mapping[str, Sequence[float]] | None,
                  rel: float = 1e-6) -> bool:
    """Equal vectors, allowing for float32 storage (pgvector, sqlite-vec, RediSearch) of
    float64 numbers."""
    if not a or not b:
        return not a and not b
    if a.keys() != b.keys():
        return False
    for name, left in a.items():
        right = b[name]
        if len(left) != len(right):
            return False
        if any(not math.isclose(x, y, rel_tol=rel, abs_tol=1e-7) for x, y in zip(left, right)):
            return False
    return True
