"""Opening stores from URLs (and failing clearly), and the native adapters' contract."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver

from dualsaver.stores import (
    StoredCheckpoint,
    StoreURLError,
    Unreadable,
    anative_for,
    aopen_saver,
    native_for,
    open_saver,
    redact,
)
from dualsaver.stores.urls import parse_store_url
from tests.backfill_support import OpaqueSaver, arun_threads, run_threads

# ------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgres://app:p%40ss@db/x?sslmode=disable", "postgres://app:***@db/x?sslmode=disable"),
        ("postgresql://db/x?password=s3cret&user=a", "postgresql://db/x?password=***&user=a"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://s3cret@127.0.0.1:6379", "redis://***@127.0.0.1:6379"),
        ("redis+cluster://u:s3cret@h1:1,h2:2", "redis+cluster://u:***@h1:1,h2:2"),
        ("sqlite:///relative.sqlite", "sqlite:///relative.sqlite"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
    ],
)
def test_redact_hides_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown


@given(st.text(alphabet=st.characters(blacklist_characters="@/?#", min_codepoint=33, max_codepoint=0x2FF), min_size=4))
@settings(max_examples=200)
def test_redact_never_shows_a_password(password: str) -> None:
    url = f"postgresql://user:{password}@host:5432/db"
    assert password not in redact(url).replace("user", "").replace("host", "").replace("postgresql", "")


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///rel/path.sqlite", "sqlite", "rel/path.sqlite"),
        ("sqlite:////abs/path.sqlite", "sqlite", "/abs/path.sqlite"),
        ("memory://", "memory", ""),
        ("postgres://u@h/db", "postgres", "postgres://u@h/db"),
        ("rediss://h:1", "redis", "rediss://h:1"),
    ],
)
def test_parse_store_url(url: str, kind: str, target: str) -> None:
    spec = parse_store_url(url)
    assert (spec.kind, spec.target) == (kind, target)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "empty"),
        ("checkpoints.sqlite", "not a store URL"),
        ("mysql://u:s3cret@h/db", "unknown store scheme"),
        ("sqlite://relative.sqlite", "bad SQLite URL"),
        ("postgresql://u:s3cret@h:notaport/db", "bad PostgreSQL URL"),
        ("sqlite:////no/such/dir/x.sqlite", "does not exist"),
    ],
)
def test_bad_urls_fail_in_one_line_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(StoreURLError) as info, open_saver(url):
        pass
    message = str(info.value)
    assert needle in message and "\n" not in message and "s3cret" not in message


def test_source_must_exist(tmp_path) -> None:
    with pytest.raises(StoreURLError, match="no such file"):
        with open_saver(f"sqlite:///{tmp_path}/missing.sqlite", must_exist=True):
            pass
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    with pytest.raises(StoreURLError, match="no LangGraph checkpoint tables"):
        with open_saver(f"sqlite:///{tmp_path}/empty.sqlite", must_exist=True):
            pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_and_wrong_password(pg_url: str) -> None:
    unreachable = f"postgresql://u:s3cret@127.0.0.1:{_closed_port()}/db"
    with pytest.raises(StoreURLError) as info, open_saver(unreachable):
        pass
    assert "cannot open postgresql://u:***@127.0.0.1" in str(info.value)
    assert "s3cret" not in str(info.value)

    parts = urlsplit(pg_url)
    wrong = pg_url.replace(f":{parts.password}@", ":Wr0ngPassw0rd@")
    with pytest.raises(StoreURLError) as info, open_saver(wrong):
        pass
    assert "password authentication failed" in str(info.value)
    assert "Wr0ngPassw0rd" not in str(info.value) and parts.password not in str(info.value)


async def test_async_wrong_password(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    wrong = pg_url.replace(f":{parts.password}@", ":Wr0ngPassw0rd@")
    with pytest.raises(StoreURLError) as info:
        async with aopen_saver(wrong):
            pass
    assert "Wr0ngPassw0rd" not in str(info.value) and "\n" not in str(info.value)


def test_cli_bad_url_exits_2_with_one_line(pg_url: str, tmp_path) -> None:
    parts = urlsplit(pg_url)
    wrong = pg_url.replace(f":{parts.password}@", ":Wr0ngPassw0rd@")
    with open_saver(f"sqlite:///{tmp_path}/old.sqlite"):
        pass
    for old, new in (
        (f"sqlite:///{tmp_path}/old.sqlite", wrong),
        (f"sqlite:///{tmp_path}/nope.sqlite", pg_url),
        ("ftp://x", pg_url),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "dualsaver.cli", "backfill", "--old", old, "--new", new,
             "--state", str(tmp_path / "state.sqlite")],
            capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "Wr0ngPassw0rd" not in proc.stderr and parts.password not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ------------------------------------------------------------------------- native adapters


def test_memory_urls_share_by_name() -> None:
    with open_saver("memory://shared-a") as a, open_saver("memory://shared-a") as b:
        assert a is b
    with open_saver("memory://") as a, open_saver("memory://") as b:
        assert a is not b


def test_adapters_are_chosen_by_backend(pg_url: str, sqlite_path) -> None:
    from dualsaver.stores._memory import MemoryNativeStore
    from dualsaver.stores._postgres import PostgresNativeStore
    from dualsaver.stores._public import PublicNativeStore
    from dualsaver.stores._sqlite import SqliteNativeStore

    with open_saver(f"sqlite:///{sqlite_path}") as s, open_saver(pg_url) as p:
        assert isinstance(native_for(s), SqliteNativeStore)
        assert isinstance(native_for(p), PostgresNativeStore)
    assert isinstance(native_for(InMemorySaver()), MemoryNativeStore)
    store = native_for(OpaqueSaver())
    assert isinstance(store, PublicNativeStore) and store.exact is False


def _records(store) -> list:
    return [item for t in store.thread_ids() for item in store.read_thread(t)]


async def _arecords(store) -> list:
    return [item async for t in store.athread_ids() async for item in store.aread_thread(t)]


def test_round_trip_memory_sqlite_postgres_memory(pg_url: str, sqlite_path) -> None:
    origin = InMemorySaver()
    run_threads(origin, ["b", "a", "c"], turns=2)
    records = _records(native_for(origin))
    assert all(isinstance(r, StoredCheckpoint) for r in records)
    assert {r.checkpoint_ns.split(":")[0] for r in records} == {"", "sub"}
    assert any(w.task_path for r in records for w in r.writes)
    with open_saver(f"sqlite:///{sqlite_path}") as s, open_saver(pg_url) as p:
        hops = [native_for(s), native_for(p), native_for(InMemorySaver())]
        for hop in hops:
            added = hop.write_checkpoints(records)
            assert added == (len(records), sum(len(r.writes) for r in records))
            assert hop.write_checkpoints(records) == (0, 0)  # idempotent
            assert _records(hop) == records
            assert list(hop.thread_ids()) == ["a", "b", "c"]
            assert hop.checkpoint_keys("a") == {(r.checkpoint_ns, r.checkpoint_id) for r in records if r.thread_id == "a"}


async def test_async_adapters_agree_with_sync(pg_url: str, tmp_path) -> None:
    origin = InMemorySaver()
    await arun_threads(origin, ["x", "y"], turns=1)
    records = _records(native_for(origin))
    async with aopen_saver(f"sqlite:///{tmp_path}/a.sqlite") as s, aopen_saver(pg_url) as p:
        for saver in (s, p):
            store = anative_for(saver)
            assert await store.awrite_checkpoints(records) == (len(records), sum(len(r.writes) for r in records))
            assert await store.awrite_checkpoints(records) == (0, 0)
            assert await _arecords(store) == records
    with open_saver(f"sqlite:///{tmp_path}/a.sqlite") as s:  # and the sync view of the same rows
        assert _records(native_for(s)) == records


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12, unique=True))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # tables cleared per example
def test_thread_order_is_code_point_order_everywhere(pg_url: str, sqlite_path, ids: list[str]) -> None:
    ids = [i.replace("\x00", "") or "z" for i in ids]
    template = InMemorySaver()
    run_threads(template, ["t"], turns=1, leave_interrupted=False)
    first = _records(native_for(template))[0]
    records = [
        StoredCheckpoint(t, "", first.checkpoint_id, None, first.checkpoint, first.metadata, ())
        for t in set(ids)
    ]
    with open_saver(f"sqlite:///{sqlite_path}") as s, open_saver(pg_url) as p:
        for saver in (s, p):
            saver.conn.execute("DELETE FROM checkpoints")
            if hasattr(saver.conn, "commit"):
                saver.conn.commit()
        for store in (native_for(s), native_for(p), native_for(InMemorySaver())):
            store.write_checkpoints(records)
            assert list(store.thread_ids()) == sorted(set(ids))


def test_unreadable_row_is_reported_not_raised(sqlite_path) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as s:
        run_threads(s, ["t1"], turns=1)
        victim = s.conn.execute("SELECT checkpoint_id FROM checkpoints LIMIT 1").fetchone()[0]
        s.conn.execute("UPDATE checkpoints SET checkpoint = X'C1C1C1' WHERE checkpoint_id = ?", (victim,))
        s.conn.commit()
        items = list(native_for(s).read_thread("t1"))
    bad = [i for i in items if isinstance(i, Unreadable)]
    assert [b.checkpoint_id for b in bad] == [victim]
    assert len(items) > 1 and bad[0].error
