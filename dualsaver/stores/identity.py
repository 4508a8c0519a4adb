"""A stable, password-free name for the store behind a saver: what keys backfill progress
and names the stores in reports when no URL was given."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

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
            rows = raw.execute("PRAGMA database_list").fetchall()
            path = next((r[2] for r in rows if r[1] == "main"), "") or ":memory:"
            if path != ":memory:":
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
    return f"{name}#{id(saver)}"  # not durable across processes; fine for in-memory stores
