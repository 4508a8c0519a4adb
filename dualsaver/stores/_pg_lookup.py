"""Small lookups on a PostgreSQL connection straight over libpq: a tiered read's probe.

The probe runs on every tiered read beside the hot store's answer, so its cost on the
caller is what a tiered read adds to the hot read. Through a cursor (adaptation, row
factory, psycopg's prepare bookkeeping) one lookup cost 47 µs of CPU and 70 µs in all;
here, a statement prepared once per connection, sent with text parameters and its text
rows read off the result, 11 µs of CPU and 27 µs (bench_tiered's machine, one caller).

A lookup is asked (`ask`: sent, not waited for) and answered (`answer`: its rows read)
in two steps, so a caller may do other I/O in between: the query runs in the server
while the caller reads the hot store. The I/O is psycopg's own sans-I/O, a generator of
waits (`psycopg.generators`), carried out by `conn.wait` (sync) or `await conn.wait`
(async): the two shells differ only there. The libpq calls psycopg would make with the GIL
let go are made holding it where that library can be named (`_libpq_held`): under many
threads a release costs a place in the GIL's queue.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import errors, generators, pq
from psycopg.abc import PQGen
from psycopg.waiting import Wait

from dualsaver.stores import _libpq_held as held

Row = tuple[str | None, ...]

# connection -> names of the statements prepared on it (its own session's state)
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_NUMBERED: dict[str, bytes] = {}  # a query with %s placeholders -> with $1, $2, ...
UNDEFINED_STATEMENT = b"26000"  # the session lost its prepared statements (DISCARD ALL, a reset)


def numbered(sql: str) -> bytes:
    """`sql` with its `%s` placeholders numbered as libpq takes them ($1, $2, ...)."""
    found = _NUMBERED.get(sql)
    if found is None:
        count = iter(range(1, sql.count("%s") + 1))
        found = _NUMBERED[sql] = re.sub("%s", lambda _: f"${next(count)}", sql).encode()
    return found


class Asked:
    """A lookup sent on `conn` whose rows are not read yet (`answer` reads them)."""

    __slots__ = ("args", "conn", "encoding", "name", "release", "sql")

    def __init__(self, conn: Any, name: str, sql: str, params: Sequence[Any]) -> None:
        self.conn, self.name, self.sql, self.encoding = conn, name, sql, conn.info.encoding
        self.args = [None if p is None else str(p).encode(self.encoding) for p in params]
        self.release: Callable[[Any], Any] = lambda _conn: None  # how the caller lets `conn` go after `answer`


def ask(conn: Any, name: str, sql: str, params: Sequence[Any]) -> PQGen[Asked]:
    """Send `sql` (`%s` placeholders) with `params`, prepared on `conn` as `name` the first
    time (unless the connection does not prepare, prepare_threshold None, as behind
    PgBouncer in transaction mode); its rows are read by `answer`."""
    asked = Asked(conn, name, sql, params)
    yield from _send(asked)
    return asked


def answer(asked: Asked) -> PQGen[list[Row]]:
    """The rows of an asked lookup, as text. A session that lost the statement (a reset
    ran DISCARD ALL) has it prepared once more and asked again."""
    pgconn = asked.conn.pgconn
    results = yield from _results(pgconn)
    if results and results[-1].error_field(pq.DiagnosticField.SQLSTATE) == UNDEFINED_STATEMENT:
        _PREPARED.get(asked.conn, set()).discard(asked.name)
        yield from _send(asked)
        results = yield from _results(pgconn)
    return _rows(results, asked.encoding)


def _results(pgconn: Any) -> PQGen[list[Any]]:
    """Every result of the statement sent, as `generators.fetch_many` reads them but holding
    the GIL (psycopg's C `consume_input` and `get_result` hold it; `is_busy`: `_libpq_held`).
    `get_result` is called only once libpq holds a whole result: else it would block."""
    results: list[Any] = []
    while True:
        # Read what already came in first: libpq calls a connection busy until it does, and
        # the caller would then wait for the socket (under asyncio, a turn of the event loop).
        pgconn.consume_input()
        while held.is_busy(pgconn):
            while not (yield Wait.R):  # psycopg's waits answer 0 when their interval passed
                continue
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


def lookup(conn: Any, name: str, sql: str, params: Sequence[Any]) -> PQGen[list[Row]]:
    """`ask` and `answer` in one."""
    return (yield from answer((yield from ask(conn, name, sql, params))))


def _send(asked: Asked) -> PQGen[None]:
    conn, pgconn = asked.conn, asked.conn.pgconn
    if conn.prepare_threshold is None:
        held.send_query_params(pgconn, numbered(asked.sql), asked.args)
    else:
        prepared = _PREPARED.get(conn)
        if prepared is None:
            prepared = _PREPARED[conn] = set()
        if asked.name not in prepared:
            pgconn.send_prepare(asked.name.encode(), numbered(asked.sql))
            _rows((yield from generators.execute(pgconn)), asked.encoding, pq.ExecStatus.COMMAND_OK)
            prepared.add(asked.name)
        held.send_query_prepared(pgconn, asked.name.encode(), asked.args)
    yield from generators.send(pgconn)


def _rows(results: Sequence[Any], encoding: str, ok: pq.ExecStatus = pq.ExecStatus.TUPLES_OK) -> list[Row]:
    result = results[-1]
    if result.status != ok:
        raise errors.error_from_result(result, encoding=encoding)
    return [
        tuple(None if (v := result.get_value(r, c)) is None else bytes(v).decode(encoding)
              for c in range(result.nfields))
        for r in range(result.ntuples)
    ]
