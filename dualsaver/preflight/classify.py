"""The predicates behind the rules: pure functions of an id or a value, no I/O.

Ids: `case_fold` / `space_fold` map a thread id to the one the official Redis saver's tag
search sees (two ids with one fold are one thread to it); `search_breaks` is true for an id
that search cannot find or fails on; `storage_key` is the `:`-joined key prefix of a (thread,
namespace) pair in that saver's layout.

Values: `value_facts` walks a value once (dicts, lists, tuples; an application object is left
to its serializer) and tells where the first NaN/Infinity, out-of-range integer, NUL string
and lone surrogate (in a string or a key) are, how deep it nests and about how many bytes it
takes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from dualsaver.preflight.rules import INT_MAX, INT_MIN
from dualsaver.stores.faithful import ascii_safe, has_surrogate, search_breaks

__all__ = ["ValueFacts", "case_fold", "has_nul", "has_surrogate", "may_join", "search_breaks", "space_fold",
           "storage_key", "value_facts"]

ZERO_UUID = "00000000-0000-0000-0000-000000000000"  # the official saver's stand-in for an empty id
EMPTY_NS = "__empty__"  # ... and for an empty namespace
_WHITESPACE = re.compile(r"\s")


def case_fold(thread_id: str) -> str:
    """The id as the tag search compares it: ASCII letters lower-cased (measured: `É` and `é`
    stay apart)."""
    return thread_id.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})


def space_fold(thread_id: str) -> str:
    """The id with each whitespace character a space."""
    return _WHITESPACE.sub(" ", thread_id)


def storage_id(value: str) -> str:
    return value or ZERO_UUID


def storage_ns(ns: str) -> str:
    return ns or EMPTY_NS


def storage_key(thread_id: str, ns: str) -> str:
    """`{thread}:{ns}` as the official saver builds its keys."""
    return f"{storage_id(thread_id)}:{storage_ns(ns)}"


def may_join(thread_id: str, ns: str) -> bool:
    """Whether the pair can share a storage key with a different pair: only if a `:` is in
    the thread id or the namespace (else the split at the first `:` is unique), so only
    such pairs need remembering."""
    return ":" in thread_id or ":" in ns


def has_nul(text: str) -> bool:
    return "\x00" in text


@dataclass(slots=True)
class ValueFacts:
    non_finite: str | None = None  # JSON path of the first NaN/Infinity
    big_int: str | None = None  # ... of the first integer outside int64..uint64
    nul: str | None = None  # ... of the first string holding NUL
    surrogate: str | None = None  # ... of the first string or key holding a lone surrogate
    depth: int = 0  # containers nested (a scalar is 0, [] is 1)
    size: int = 0  # estimated bytes: string and bytes lengths, 8 per other scalar


def value_facts(value: Any) -> ValueFacts:
    """One walk of `value`; see the module docstring."""
    facts = ValueFacts()
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]  # node, its depth, its path (linked)
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            facts.depth = max(facts.depth, depth + 1)
            for k, v in node.items():
                if isinstance(k, str):
                    facts.size += len(k)
                    if facts.surrogate is None and not k.isascii() and has_surrogate(k):
                        facts.surrogate = _render((path, k))
                else:
                    facts.size += 8
                stack.append((v, depth + 1, (path, k)))
        elif isinstance(node, (list, tuple)):
            facts.depth = max(facts.depth, depth + 1)
            stack.extend((v, depth + 1, (path, i)) for i, v in enumerate(node))
        elif isinstance(node, str):
            facts.size += len(node)
            if facts.nul is None and "\x00" in node:
                facts.nul = _render(path)
            if facts.surrogate is None and not node.isascii() and has_surrogate(node):
                facts.surrogate = _render(path)
        elif isinstance(node, (bytes, bytearray)):
            facts.size += len(node)
        elif isinstance(node, bool) or node is None:
            facts.size += 1
        elif isinstance(node, int):
            facts.size += 8
            if facts.big_int is None and not INT_MIN <= node <= INT_MAX:
                facts.big_int = _render(path)
        elif isinstance(node, float):
            facts.size += 8
            if facts.non_finite is None and not math.isfinite(node):
                facts.non_finite = _render(path)
    return facts


def _render(path: Any) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return ascii_safe("$" + "".join(reversed(parts)))
