"""A tiered read's probe makes its libpq calls holding the GIL (`dualsaver.stores._libpq_held`).

Real PostgreSQL. The library is the one psycopg loaded (it answers for psycopg's own
connection), and a lookup reads the same rows through it as through psycopg's calls: an
answer asked before the server replied (it waits for the socket), an error, a statement
the session lost, a connection that does not prepare, a closed connection, many threads at
once, sync and async.
"""

from __future__ import annotations

import ctypes
import sys
import threading

import psycopg
import pytest

from dualsaver.stores import _libpq_held as held
from dualsaver.stores._pg_lookup import answer, ask, lookup

SLOW = "SELECT pg_sleep(%s)::text, %s::text"  # answers after the caller asked for it


@pytest.fixture(params=["held", "psycopg"])
def calls(request, monkeypatch) -> str:
    """Each test runs with the held library and with psycopg's own calls (where it is None)."""
    if request.param == "psycopg":
        monkeypatch.setattr(held, "library", lambda: None)
    return request.param


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the library is named from /proc/self/maps")
def test_the_library_is_the_one_psycopg_uses(pg_url) -> None:
    lib = held.library()
    assert lib is not None  # else the probe silently lets the GIL go (bench_tiered's 1.58x)
    lib.PQbackendPID.argtypes = [ctypes.c_void_p]
    with psycopg.Connection.connect(pg_url, autocommit=True) as conn:
        assert lib.PQbackendPID(conn.pgconn.pgconn_ptr) == conn.info.backend_pid
        assert not held.is_busy(conn.pgconn)


@pytest.mark.parametrize("maps", [
    "",  # no libpq loaded
    "7f00-7f01 r-xp 0 08:01 1 /usr/lib/libpq.so.5.16\n7f02-7f03 r-xp 0 08:01 2 /opt/libs/libpq-e9b5c9ac.so.5.18\n",
    "7f00-7f01 r-xp 0 08:01 1 /opt/libs/libpq-e9b5c9ac.so.5.18 (deleted)\n",  # replaced since it was loaded
])
def test_a_library_that_cannot_be_named_for_certain_is_not_used(tmp_path, monkeypatch, maps) -> None:
    (tmp_path / "maps").write_text(maps)
    monkeypatch.setattr(held, "MAPS", str(tmp_path / "maps"))
    assert held.library.__wrapped__() is None  # not the cached answer: these maps' own


@pytest.mark.parametrize("prepare_threshold", [0, None])
def test_an_answer_asked_before_the_server_replied_waits_for_it(pg_url, calls, prepare_threshold) -> None:
    with psycopg.Connection.connect(pg_url, autocommit=True, prepare_threshold=prepare_threshold) as conn:
        asked = conn.wait(ask(conn, "dualsaver_slow", SLOW, ("0.3", "late")))
        assert held.is_busy(conn.pgconn)
        assert conn.wait(answer(asked)) == [("", "late")]
        assert conn.execute("SELECT 1").fetchone() == (1,)  # nothing of the lookup left unread


def test_an_error_is_raised_and_the_connection_stays_usable(pg_url, calls) -> None:
    with psycopg.Connection.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.wait(lookup(conn, "dualsaver_div", "SELECT (1 / %s::int)::text", ("0",)))
        assert conn.wait(lookup(conn, "dualsaver_div", "SELECT (1 / %s::int)::text", ("1",))) == [("1",)]


def test_a_session_that_lost_the_statement_prepares_it_again(pg_url, calls) -> None:
    with psycopg.Connection.connect(pg_url, autocommit=True) as conn:
        assert conn.wait(lookup(conn, "dualsaver_echo", "SELECT %s::text", ("a",))) == [("a",)]
        conn.execute("DEALLOCATE ALL")
        assert conn.wait(lookup(conn, "dualsaver_echo", "SELECT %s::text", ("b",))) == [("b",)]


def test_a_closed_connection_is_an_operational_error(pg_url, calls) -> None:
    conn = psycopg.Connection.connect(pg_url, autocommit=True)
    pgconn = conn.pgconn
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        held.send_query_prepared(pgconn, b"dualsaver_echo", [b"a"])
    with pytest.raises(psycopg.OperationalError):
        held.send_query_params(pgconn, b"SELECT $1::text", [b"a"])


def test_many_threads_each_read_their_own_answer(pg_url, calls) -> None:
    failures: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            with psycopg.Connection.connect(pg_url, autocommit=True) as conn:
                for i in range(50):
                    value = f"{n}-{i}"
                    asked = conn.wait(ask(conn, "dualsaver_slow", SLOW, ("0.001" if i % 5 else "0", value)))
                    assert conn.wait(answer(asked)) == [("", value)]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


async def test_async_answers_wait_for_the_server_too(pg_url, calls) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        asked = await conn.wait(ask(conn, "dualsaver_slow", SLOW, ("0.3", "late")))
        assert await conn.wait(answer(asked)) == [("", "late")]
        with pytest.raises(psycopg.errors.DivisionByZero):
            await conn.wait(lookup(conn, "dualsaver_div", "SELECT (1 / %s::int)::text", ("0",)))
        assert await conn.wait(lookup(conn, "dualsaver_echo", "SELECT %s::text", ("c",))) == [("c",)]
