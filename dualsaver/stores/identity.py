"""A stable, password-free name for the store behind a saver: what keys backfill progress
and names the stores in reports when no URL was given."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

from dualsaver.errors import SameStore
from dualsaver.redact import redact


def store_identity(saver: Any) -> str:
    """A stable, password-free name for the store behind `saver`, for keying progress."""
    saver = getattr(saver, "saver", saver)  # a native store: name the saver behind it
    name = type(saver).__name__
    if hasattr(saver, "store_identity") and callable(saver.store_identity):
        return redact(str(saver.store_identity()))
    conn = getattr(saver, "conn", None)
    raw = getattr(conn, "_conn", None) or conn  # aiosqlite keeps the sqlite3 connection here
    if isinstance(raw, sqlite3.Connection):
        try:
            path = _sqlite_path(raw)
            if path:
                return f"sqlite:///{os.path.realpath(path)}"
        except sqlite3.Error:
            pass
        return f"sqlite:///:memory:#{id(raw)}"
    info = getattr(conn, "info", None)
    if info is not None and hasattr(info, "dbname"):  # psycopg connection: no password in it
        return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"
    conninfo = getattr(conn, "conninfo", None)  # psycopg_pool
    if isinstance(conninfo, str):
        return redact(conninfo)
    redis_at = _redis_address(saver)  # dualsaver's Redis saver: no password in the pool's address
    if redis_at is not None:
        host, port, path, db, prefix = redis_at
        return f"redis://{path or f'{host}:{port}'}/{db}?prefix={prefix}"
    redis_group = _redis_group(saver)
    if redis_group is not None:
        return redis_group
    return f"{name}#{id(saver)}"  # not durable across processes; fine for in-memory stores


def store_fingerprint(saver: Any) -> str:
    """Which store this is, whatever URL named it: two URLs that reach the same database give
    the same fingerprint, and two databases never do. PostgreSQL: the cluster's system id
    (else the server address the connection reached) and the database; SQLite: the file's
    device and inode; dualsaver's Redis saver: an id it keeps in the store, per prefix.
    Anything else falls back to `store_identity`."""
    saver = getattr(saver, "saver", saver)
    conn = getattr(saver, "conn", None)
    raw = getattr(conn, "_conn", None) or conn
    if _is_sqlite(raw):
        file = _sqlite_file(raw)
        return f"sqlite:{file[0]}:{file[1]}" if file else f"sqlite:memory:{id(raw)}"
    if type(conn).__module__.startswith("psycopg"):  # a psycopg connection, or a psycopg_pool pool
        return _postgres_fingerprint(conn)
    if hasattr(saver, "_keys") and hasattr(saver, "client") and hasattr(saver, "prefix"):
        key = f"{{{saver.prefix}}}:identity"
        saver.client.set(key, uuid.uuid4().hex, nx=True)
        return f"redis:{saver.client.get(key).decode()}"
    return store_identity(saver)


def _postgres_fingerprint(conn: Any) -> str:
    import contextlib

    def ask(c: Any) -> str:
        cur = c.execute(
            "SELECT current_database(), coalesce(host(inet_server_addr()), 'local') || ':'"
            " || coalesce(inet_server_port()::text, '')"
        )
        row = cur.fetchone()
        db, where = (row["current_database"], row["?column?"]) if isinstance(row, dict) else row
        with contextlib.suppress(Exception):  # superusers and pg_monitor see the cluster's own id
            found = c.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
            where = found["system_identifier"] if isinstance(found, dict) else found[0]
        return f"postgresql:{where}/{db}"

    return _on_postgres(conn, ask)


def _on_postgres(conn: Any, ask: Callable[[Any], str]) -> str:
    """`ask(connection)` on a psycopg connection, or on one borrowed from a psycopg_pool pool."""
    if type(conn).__module__.startswith("psycopg_pool"):
        with conn.connection() as c:
            return ask(c)
    return ask(conn)


def _sqlite_path(raw: Any) -> str:
    """The path of a SQLite connection's main database file; "" in memory."""
    rows = raw.execute("PRAGMA database_list").fetchall()
    return next((r[2] for r in rows if r[1] == "main"), "") or ""


def _sqlite_file(raw: Any) -> tuple[int, int] | None:
    """The device and inode of a SQLite connection's main database file; None in memory."""
    path = _sqlite_path(raw)
    if not path:
        return None
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def postgres_schema(saver: Any) -> str | None:
    """The schema a sync PostgreSQL saver's tables are found in (`current_schema()`: its
    search path), which `store_fingerprint` (the database) does not tell apart; None for
    another store."""
    conn: Any = getattr(getattr(saver, "saver", saver), "conn", None)
    if not type(conn).__module__.startswith("psycopg"):
        return None

    def ask(c: Any) -> str:
        row = c.execute("SELECT current_schema() AS schema").fetchone()
        return str(row["schema"] if isinstance(row, dict) else row[0])

    return _on_postgres(conn, ask)


def same_store(a: Any, b: Any) -> bool:
    """Whether two savers, native stores or item stores certainly reach one store, told
    without writing to either: the same object; the same SQLite file; the same PostgreSQL
    database as the same user with the same options (tables are found by the search path,
    which a user name or `options` may set: another schema is another store); the same Redis
    database under the same key prefix (dualsaver's Redis saver). Unsure (two names of one
    server, a cluster, a sentinel): False."""
    a, b = _behind(a), _behind(b)
    if a is b:
        return True
    where = _where(a)
    return where is not None and where == _where(b)


def refuse_same_store(a: Any, b: Any, what: str, name: Callable[[Any], str] = store_identity) -> None:
    """Raise `SameStore` when `a` and `b` reach one store (`same_store`): `what` (a backfill,
    a check, a repair) needs two. `name` names the store in the message."""
    if same_store(a, b):
        raise SameStore(f"old and new are the same store ({name(a)}): {what} needs two stores")


def _is_sqlite(conn: Any) -> bool:
    """A SQLite connection: the standard library's, or pysqlite3's (item stores use it)."""
    return isinstance(conn, sqlite3.Connection) or type(conn).__module__ == "pysqlite3.dbapi2"


def _behind(wrapper: Any) -> Any:
    """The saver or store behind adapters: a native store's `saver`, an item adapter's or a
    threaded adapter's `store` (a threaded adapter over a native store over a saver)."""
    for _ in range(4):
        inner = getattr(wrapper, "saver", None) or getattr(wrapper, "store", None)
        if inner is None:
            break
        wrapper = inner
    return wrapper


def _where(store: Any) -> tuple[Any, ...] | None:
    conn = getattr(store, "conn", None)
    raw: Any = getattr(conn, "_conn", None) or conn
    if _is_sqlite(raw):
        try:
            file = _sqlite_file(raw)  # in memory (None): only the same object is the same store
        except Exception:  # another thread's connection (aiosqlite's), a closed one: unsure
            return None
        return None if file is None else ("sqlite", *file)
    if type(conn).__module__.startswith("psycopg"):
        return _postgres_where(conn)
    redis_at = _redis_address(store)
    return None if redis_at is None else ("redis", *redis_at)


def _redis_address(saver: Any) -> tuple[Any, ...] | None:
    """(host, port, path, db, prefix) of dualsaver's Redis saver on one server; None for
    anything else (a cluster, a sentinel: unsure)."""
    pool = getattr(getattr(saver, "client", None), "connection_pool", None)
    prefix = getattr(saver, "prefix", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    if isinstance(prefix, str) and ("host" in kwargs or "path" in kwargs):
        return kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), kwargs.get("db", 0), prefix
    return None


def _redis_group(saver: Any) -> str | None:
    """dualsaver's Redis saver on a Sentinel deployment or a cluster, named by what stays when
    a master fails over (the sentinels and the service; the cluster's nodes as the client
    knows them), so a backfill opened again resumes; None for anything else."""
    prefix = getattr(saver, "prefix", None)
    client = getattr(saver, "client", None)
    if not isinstance(prefix, str) or client is None:
        return None
    pool: Any = getattr(client, "connection_pool", None)
    sentinels = getattr(getattr(pool, "sentinel_manager", None), "sentinels", None)
    if sentinels:
        where = sorted({_address(s.connection_pool.connection_kwargs) for s in sentinels})
        db = pool.connection_kwargs.get("db", 0)
        return f"redis+sentinel://{','.join(where)}/{pool.service_name}/{db}?prefix={prefix}"
    nodes = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if nodes:
        return f"redis+cluster://{','.join(sorted(nodes))}/?prefix={prefix}"
    return None


def _address(kwargs: dict[str, Any]) -> str:
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def _postgres_where(conn: Any) -> tuple[Any, ...] | None:
    from psycopg.conninfo import conninfo_to_dict

    info = getattr(conn, "info", None)
    if info is not None:  # a connection: where it is
        params = info.get_parameters()
        return ("postgresql", info.host, info.port, info.dbname, info.user, params.get("options"))
    conninfo = getattr(conn, "conninfo", None)  # a pool: where its connections go
    if not isinstance(conninfo, str):
        return None
    params = conninfo_to_dict(conninfo, **{k: v for k, v in (getattr(conn, "kwargs", None) or {}).items()
                                          if isinstance(v, (str, int))})
    return ("postgresql pool", *(str(params.get(k)) for k in ("host", "port", "dbname", "user", "options")))
