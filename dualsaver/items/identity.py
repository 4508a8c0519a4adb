"""A stable, password-free name for the store behind an item store (what a backfill job's
progress is keyed by, so a re-run against the same stores resumes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dualsaver.redact import redact

_urls: dict[int, str] = {}  # id(store) -> the URL it was opened from, while it is open


@contextmanager
def named(store: Any, url: str) -> Iterator[None]:
    """Name `store` by `url` while it is open (some stores take no attributes)."""
    _urls[id(store)] = url
    try:
        yield
    finally:
        _urls.pop(id(store), None)


def item_store_name(store: Any) -> str:
    store = getattr(store, "store", store)  # an adapter names its store
    if (url := _urls.get(id(store))) is not None:
        return redact(url)
    kind = type(store).__name__
    conn = getattr(store, "conn", None)
    try:
        if kind == "SqliteStore" and conn is not None and hasattr(conn, "execute"):
            return f"sqlite:///{conn.execute('PRAGMA database_list').fetchone()[2]}"
        info = getattr(conn, "info", None)
        if info is not None and hasattr(info, "dsn"):
            return redact(f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}")
        pool = getattr(getattr(store, "_redis", None), "connection_pool", None)
        if pool is not None:
            kw = pool.connection_kwargs
            return f"redis://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"
    except Exception:  # a name is a convenience: never fail a job over it
        pass
    return f"{kind}@{id(store):x}"
