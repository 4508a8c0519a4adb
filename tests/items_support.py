"""What the item tests share: a deterministic embedding (no model is downloaded), opening
each kind of official store on the test servers, planting items, and reading them back."""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from typing import Any
from collections.abc import Iterator

from dualsaver.items import items_for, open_item_store
from dualsaver.items.record import utc

DIMS = 8
KINDS = ("sqlite", "postgres", "redis", "memory")


def embed(texts: list[str]) -> list[list[float]]:
    """A stable vector per text: words hashed into DIMS buckets (similar texts are close)."""
    out = []
    for text in texts:
        v = [0.0] * DIMS
        for word in text.split():
            h = hashlib.sha256(word.encode("utf-8", "surrogatepass")).digest()  # any str a store is given
            v[h[0] % DIMS] += 1.0 + h[1] / 255
        v[DIMS - 1] += len(text) / 100
        out.append(v)
    return out


INDEX = {"dims": DIMS, "embed": embed, "fields": ["text"], "text_fields": ["text"]}
WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "orbit", "candle", "forest"]


@contextmanager
def store_of(kind: str, servers: dict[str, Any], index: Any = INDEX) -> Iterator[Any]:
    """A fresh official store of `kind` (servers: tmp_path, pg (a URL factory), redis URLs)."""
    if kind == "sqlite":
        n = servers.setdefault("sqlite_n", 0) + 1
        servers["sqlite_n"] = n
        url = f"sqlite:///{servers['tmp_path']}/store{n}.sqlite"
    elif kind == "postgres":
        url = servers["pg"]()
    elif kind == "redis":
        url = servers["redis"].pop(0)
    else:
        url = "memory://"
    with open_item_store(url, index=index) as store:
        yield store


def _text(i: int) -> str:
    return " ".join([f"item{i}", *[WORDS[(i * k + k) % len(WORDS)] for k in (1, 3, 7)][: 1 + i % 3]])


def plant(store: Any, count: int = 40, ttl: bool = True) -> None:
    """Items over a few namespaces: some embedded, some not, some with a TTL, some updated."""
    for i in range(count):
        ns = ("users", f"u{i % 4}") if i % 5 else ("users", f"u{i % 4}", "facts")
        value = {"text": _text(i), "n": i, "tags": [i % 2, {"deep": i}]}
        kwargs: dict[str, Any] = {"index": False} if i % 7 == 3 else {}
        if ttl and i % 3 == 0:
            kwargs["ttl"] = 60 + i
        store.put(ns, f"k{i:03d}", value, **kwargs)
    time.sleep(0.01)
    for i in range(0, count, 6):  # updated: updated_at later than created_at (where kept)
        ns = ("users", f"u{i % 4}") if i % 5 else ("users", f"u{i % 4}", "facts")
        ttl_kwargs = {"ttl": 60 + i} if ttl and i % 3 == 0 else {}
        store.put(ns, f"k{i:03d}", {"text": _text(i), "n": -i, "tags": [i % 2, {"deep": i}]}, **ttl_kwargs)


def official_items(store: Any) -> dict[tuple[tuple[str, ...], str], tuple[Any, Any, Any]]:
    """Every item as the official store itself answers `search`: value and both times (UTC).
    (Not `get`: the official RedisStore's `get` misses in a namespace of two labels or more,
    an upstream bug its `search` does not share; and the namespaces come from the adapter,
    as its `list_namespaces` looks at the first ten documents only.)"""
    found = {}
    for namespace in sorted({ns for ns, _ in native(store)}):
        for item in store.search(namespace, limit=1000):
            if tuple(item.namespace) == tuple(namespace):
                found[(tuple(namespace), item.key)] = (item.value, utc(item.created_at), utc(item.updated_at))
    return found


def native(store: Any) -> dict[Any, Any]:
    return {i.ident: i for i in items_for(store).items()}


def search_keys(store: Any, query: str) -> list[str]:
    return [i.key for i in store.search(("users",), query=query, limit=15)]
