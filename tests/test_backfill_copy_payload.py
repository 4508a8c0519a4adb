"""A table's rows sent as one preformatted binary COPY payload land exactly as row-by-row
`write_row` puts them (sync and async cursors, a real PostgreSQL): text in any script, an int,
bytes of every value, JSONB sent as its wire bytes."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg.types.string import BytesBinaryDumper

from dualsaver.stores._postgres import JSONB_VERSION, AsyncCursor, Cursor, binary_payload

TYPES = ("text", "int4", "bytea", "bytea")  # the last is a JSONB column sent as its wire bytes
ROWS = [
    (f"thread-{i}-ü-字", i, bytes(range(i % 256)) + b"\x00\xff", JSONB_VERSION + b'{"n": %d, "s": "\\u00e9"}' % i)
    for i in range(300)
]
TABLE = "CREATE TABLE {} (t text, i int4, b bytea, j jsonb)"
SELECT = "SELECT t, i, b, j FROM {} ORDER BY i"


def _write_rows_one_by_one(conn: psycopg.Connection, table: str) -> None:
    with conn.cursor(binary=True) as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        cur.adapters.register_dumper(bytes, BytesBinaryDumper)
        copy.set_types(TYPES)
        for row in ROWS:
            copy.write_row(row)


def test_the_payload_is_what_write_row_sends(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in ("by_rows", "by_payload", "by_payload_async"):
            conn.execute(TABLE.format(table))
        _write_rows_one_by_one(conn, "by_rows")
        with conn.cursor(binary=True) as cur:
            Cursor(cur).copy("COPY by_payload FROM STDIN (FORMAT BINARY)", TYPES, ROWS)
            assert binary_payload(cur, TYPES, ROWS) is not None  # the fast path ran, not the fallback

        async def write_async() -> None:
            aconn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
            async with aconn, aconn.cursor(binary=True) as acur:
                await AsyncCursor(acur).acopy("COPY by_payload_async FROM STDIN (FORMAT BINARY)", TYPES, ROWS)

        asyncio.run(write_async())
        expected = conn.execute(SELECT.format("by_rows")).fetchall()
        assert len(expected) == len(ROWS) and expected[1][3] == {"n": 1, "s": "é"}
        assert conn.execute(SELECT.format("by_payload")).fetchall() == expected
        assert conn.execute(SELECT.format("by_payload_async")).fetchall() == expected
