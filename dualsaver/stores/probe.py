"""Does a store answer? A look that never creates anything, for `dualsaver status`.

`probe_store(url)` connects, asks whether the LangGraph checkpoint tables (or the official
Redis saver's index) are there with the same queries `open_saver(..., must_exist=True)` uses,
and says so in one line; the URL is shown with its password masked. A driver that is not
installed is named with the extra that brings it, as opening the store would.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dualsaver.errors import StoreURLError, describe_error, install_hint
from dualsaver.redact import redact, scrub
from dualsaver.stores._open import _PG_HAS_TABLES, _SQLITE_HAS_TABLES
from dualsaver.stores.urls import StoreURL, parse_store_url

PROBE_TIMEOUT = 5  # seconds: a store that does not answer in time is called unreachable

# The modules each kind of store is opened with (the probes themselves need less).
_DRIVERS = {
    "sqlite": ("langgraph.checkpoint.sqlite",), "postgres": ("langgraph.checkpoint.postgres", "psycopg"),
    "redis": ("redis",), "langgraph-redis": ("langgraph.checkpoint.redis",),
}


def probe_store(url: str | None) -> dict[str, Any]:
    """`url` (redacted), its `kind`, whether it is `reachable` (None: not configured) and a
    one-line `detail`."""
    if not url:
        return {"url": None, "reachable": None, "detail": "not configured"}
    out: dict[str, Any] = {"url": redact(url)}
    try:
        spec = parse_store_url(url)
        out["kind"] = spec.kind
        if missing := missing_driver(spec.kind):  # the server may answer; dualsaver could not open it
            out["reachable"], out["detail"] = False, f"cannot be opened here: {missing}"
            return out
        out["reachable"], out["detail"] = _PROBES[spec.kind](spec)
    except StoreURLError as exc:
        out["reachable"], out["detail"] = False, str(exc)
    except Exception as exc:
        out["reachable"], out["detail"] = False, scrub(describe_error(exc), url)
    return out


def missing_driver(kind: str) -> str | None:
    """The install hint for the first driver of `kind` that does not import, or None."""
    for module in _DRIVERS.get(kind, ()):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            return install_hint(exc.name)
    return None


def _probe_sqlite(spec: StoreURL) -> tuple[bool, str]:
    if spec.target == ":memory:":
        return True, "in-memory database (this process only)"
    path = Path(spec.target)
    if not path.exists():
        return False, f"no such file: {path}"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=PROBE_TIMEOUT)
    try:
        row = conn.execute(_SQLITE_HAS_TABLES).fetchone()
    finally:
        conn.close()
    return True, "checkpoint tables present" if row else "reachable; no checkpoint tables yet"


def _probe_postgres(spec: StoreURL) -> tuple[bool, str]:
    import psycopg

    with psycopg.connect(spec.target, connect_timeout=PROBE_TIMEOUT, autocommit=True) as conn:
        row = conn.execute(_PG_HAS_TABLES).fetchone()
        present = bool(row and row[0])
        version = conn.info.server_version
    tables = "checkpoint tables present" if present else "no checkpoint tables yet"
    return True, f"PostgreSQL {version // 10000}; {tables}"


def _probe_redis(spec: StoreURL) -> tuple[bool, str]:
    from dualsaver.redis.url import parse_redis_url, sync_client

    target = parse_redis_url(spec.url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT)
    client = sync_client(target)
    try:
        client.ping()
    finally:
        client.close()
    return True, "cluster answers PING" if target.cluster else "answers PING"


def _probe_langgraph_redis(spec: StoreURL) -> tuple[bool, str]:
    from dualsaver.redis.url import parse_redis_url, sync_client

    target = parse_redis_url(spec.url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT)
    target.client["protocol"] = 2
    client = sync_client(target)
    try:
        client.ping()
        modules = {_decoded(m[m.index(b"name") + 1]) for m in client.execute_command("MODULE", "LIST")}
        indexes = {_decoded(n) for n in client.execute_command("FT._LIST")} if "search" in modules else set()
    finally:
        client.close()
    missing = sorted({"ReJSON", "search"} - modules)
    if missing:
        return False, f"answers PING, but lacks the module(s) {', '.join(missing)} the official saver needs"
    present = target.saver.get("checkpoint_prefix", "checkpoint") in indexes
    index = "checkpoint index present" if present else "no checkpoint index yet"
    return True, f"RedisJSON and RediSearch loaded; {index}"


def _decoded(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _probe_factory(spec: StoreURL) -> tuple[bool, str]:
    module, _, name = spec.target.partition(":")
    found = callable(getattr(importlib.import_module(module), name, None))
    return found, "factory importable (not called)" if found else f"{module} has no callable {name!r}"


def _probe_memory(spec: StoreURL) -> tuple[bool, str]:
    return True, "in-memory store (this process only)"


_PROBES: dict[str, Callable[[StoreURL], tuple[bool, str]]] = {
    "sqlite": _probe_sqlite,
    "postgres": _probe_postgres,
    "redis": _probe_redis,
    "langgraph-redis": _probe_langgraph_redis,
    "python": _probe_factory,
    "memory": _probe_memory,
}
