"""Live writes: whether the secondary can hold one `put` / `put_writes` faithfully.

A composite saver asks `write_refusal(kind, operation, args)` before it sends a write to the
secondary; a `LossyValue` (naming the rule) means the write is not sent but journaled, counted
and shown by `dualsaver status`, and the read-switch guard refuses while such entries wait
(they name new). Only what one write shows is judged: its ids and its values. Collisions
between threads (`Alice` / `alice`) need the whole store: the preflight finds those.

Only targets that change a value quietly are judged (the official Redis saver; PostgreSQL's
metadata NUL stripping and its NaN, named rather than left to the driver's message;
dualsaver's Redis, whose msgpack writes a lone surrogate in metadata as `?`, and SQLite,
whose UTF-8 encoding with errors='ignore' drops it, for their metadata only): the others
refuse loudly on their own, and their refusal is journaled as it is. The walk costs one pass
over the write's values, so an unjudged target costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from dualsaver.errors import LossyValue
from dualsaver.preflight import classify as c
from dualsaver.preflight.rules import (
    BY_ID, LANGGRAPH_REDIS, ORJSON_MAX_DEPTH, POSTGRES, REDIS, REDISJSON_VALUE_MAX_DEPTH, SQLITE,
)

JUDGED = frozenset({LANGGRAPH_REDIS, POSTGRES, REDIS, SQLITE})
_METADATA_SURROGATE = {REDIS: "redis.surrogate", SQLITE: "sqlite.surrogate"}  # kinds judged on that alone


def _refusal(rule: str, what: str) -> LossyValue:
    return LossyValue(f"{what}: held back from the target", rule=rule, rule_class=BY_ID[rule].rule_class)


def _ids(kind: str, thread_id: str, ns: str) -> LossyValue | None:
    if kind == LANGGRAPH_REDIS:
        if c.has_nul(thread_id) or c.has_nul(ns):
            return _refusal("langgraph-redis.nul-id", "NUL in the thread id or namespace")
        if c.search_breaks(thread_id):
            return _refusal("langgraph-redis.search-syntax", "its tag search cannot find this thread id")
    elif c.has_nul(thread_id) or c.has_nul(ns):
        return _refusal("postgres.nul", "NUL in the thread id or namespace")
    return None


_METADATA_RULES = {  # kind -> (rule for NaN/Infinity, rule for NUL) in metadata
    LANGGRAPH_REDIS: ("langgraph-redis.json-non-finite", "langgraph-redis.json-nul"),
    POSTGRES: ("postgres.json-non-finite", "postgres.nul"),
}


def _metadata(kind: str, metadata: Any) -> LossyValue | None:
    facts = c.value_facts(metadata)
    non_finite, nul = _METADATA_RULES[kind]
    if facts.non_finite is not None:
        return _refusal(non_finite, f"metadata holds NaN or Infinity at {facts.non_finite}")
    if facts.nul is not None:
        return _refusal(nul, f"metadata holds NUL at {facts.nul}")
    if kind == LANGGRAPH_REDIS and facts.depth > ORJSON_MAX_DEPTH:
        return _refusal("langgraph-redis.deep-nesting", f"metadata nested {facts.depth} deep")
    return None


def _values(kind: str, values: Iterable[tuple[str, Any]], what: str) -> LossyValue | None:
    for name, value in values:
        if kind == POSTGRES:  # only floats kept inline reach JSONB
            if isinstance(value, float) and not math.isfinite(value):
                return _refusal("postgres.json-non-finite", f"{what} {name} is NaN or Infinity")
            continue
        facts = c.value_facts(value)
        if facts.non_finite is not None:
            return _refusal(
                "langgraph-redis.json-non-finite", f"{what} {name} holds NaN or Infinity at {facts.non_finite}"
            )
        if facts.depth > REDISJSON_VALUE_MAX_DEPTH:
            return _refusal("langgraph-redis.deep-nesting", f"{what} {name} nested {facts.depth} deep")
    return None


def write_refusal(kind: str, operation: str, args: tuple) -> LossyValue | None:
    """Why a target of `kind` cannot hold this write faithfully, or None."""
    if kind not in JUDGED or operation not in ("put", "put_writes"):
        return None
    if (rule := _METADATA_SURROGATE.get(kind)) is not None:
        # only their metadata changes quietly (ids with a lone surrogate fail loudly)
        if operation == "put" and (at := c.value_facts(args[2]).surrogate) is not None:
            return _refusal(rule, f"metadata holds a lone surrogate at {at}")
        return None
    configurable = (args[0] or {}).get("configurable", {})
    refusal = _ids(kind, str(configurable.get("thread_id", "")), str(configurable.get("checkpoint_ns", "")))
    if refusal is not None:
        return refusal
    if operation == "put":
        _, checkpoint, metadata, _versions = args
        return _metadata(kind, metadata) or _values(kind, (checkpoint.get("channel_values") or {}).items(), "channel")
    if kind == LANGGRAPH_REDIS:
        return _values(kind, args[1], "write to")
    return None
