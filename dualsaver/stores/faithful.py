"""What a writer checks before it converts anything: values its store cannot hold exactly.

Some targets change a value on the way in instead of refusing it: orjson (the PostgreSQL
writer's JSON, the official Redis saver's) writes NaN and Infinity as ``null``, and the
official Redis saver and `PostgresSaver`'s metadata helper strip NUL characters, the
default serializer's msgpack (dualsaver's Redis metadata) writes a lone surrogate as ``?``, and
`SqliteSaver`'s metadata encoding (UTF-8, errors='ignore') drops it. A writer
calls `refuse` first, so such a row is refused and named
(a `LossyValue`, reported as a bad row) unless the operator accepted that rule class
(`--allow-lossy`). The rule ids are the preflight's (`dualsaver.preflight.rules`).

The walks follow dicts, lists and tuples (what JSON holds); an application object is left to
the serializer that encodes it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import Any

from dualsaver.errors import LossyValue

NON_FINITE = "non-finite"  # rule class: NaN, Infinity, -Infinity
NUL = "nul"  # rule class: a NUL character
SURROGATE = "surrogate"  # rule class: a lone surrogate ('\ud800'), which UTF-8 cannot encode
SEARCH_SYNTAX = "search-syntax"  # rule class: an id the official Redis saver's tag search cannot find
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def search_breaks(thread_id: str) -> bool:
    """Whether the official Redis saver's tag search cannot find this thread id, or raises on
    it (measured on Redis 8: `_` alone, a control character, the tag separator `,`, a
    backtick, a leading or trailing space)."""
    return (
        thread_id == "_"
        or _CONTROL.search(thread_id) is not None
        or "," in thread_id
        or "`" in thread_id
        or thread_id[:1] == " "
        or thread_id[-1:] == " "
    )


def first_path(value: Any, hit: Callable[[Any], bool], path: str = "$", keys: bool = False) -> str | None:
    """The JSON path of the first leaf of `value` where `hit` is true, else None; with `keys`,
    a dict key where it is true counts too (named by its own path)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            if keys and (key := next((k for k in node if hit(k)), None)) is not None:
                return f"{at}.{key}"
            stack.extend((v, f"{at}.{k}") for k, v in reversed(node.items()))
        elif isinstance(node, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in reversed(list(enumerate(node))))
        elif hit(node):
            return at
    return None


def _holds(value: Any, hit: Callable[[Any], bool], keys: bool) -> bool:
    """`first_path` without the paths: whether there is one (the common answer, no, found at
    a fraction of the cost; the path is made only for the message)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if keys and any(hit(k) for k in node):
                return True
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif hit(node):
            return True
    return False


def is_non_finite(node: Any) -> bool:
    return isinstance(node, float) and not math.isfinite(node)


def has_nul(node: Any) -> bool:
    return isinstance(node, str) and "\x00" in node


def has_surrogate(node: Any) -> bool:
    """A str holding a lone surrogate (a str cannot hold a valid pair: Python joins none).
    ASCII, most text, is answered without a scan."""
    return isinstance(node, str) and not node.isascii() and _SURROGATES.search(node) is not None


_WHAT = {  # rule class -> (the leaf that is lost, what it is, what the target does with it)
    NON_FINITE: (is_non_finite, "NaN or Infinity", "would store it as null"),
    NUL: (has_nul, "a NUL character", "would strip it"),
    SURROGATE: (has_surrogate, "a lone surrogate", "would write it as '?'"),
}


def refuse(
    value: Any, rule_class: str, what: str, rule: str, target: str, allowed: Collection[str] = (),
    *, keys: bool = False, fate: str | None = None,
) -> None:
    """Raise `LossyValue` when `value` holds a leaf of `rule_class` (NON_FINITE, NUL, SURROGATE) that
    `target` would change, unless the class is allowed. `keys`: a dict key counts too; `fate`:
    what `target` does with it, when not the class's usual."""
    if rule_class in allowed:
        return
    hit, name, usual = _WHAT[rule_class]
    fate = fate or usual
    if _holds(value, hit, keys) and (at := first_path(value, hit, keys=keys)) is not None:
        raise LossyValue(f"{what} holds {name} at {ascii_safe(at)}: {target} {fate}", rule=rule,
                         rule_class=rule_class)


def ascii_safe(text: str) -> str:
    """`text` printable and encodable: a lone surrogate (in a key on a path) as `\\udXXX`."""
    return text if not has_surrogate(text) else text.encode("utf-8", "backslashreplace").decode()
