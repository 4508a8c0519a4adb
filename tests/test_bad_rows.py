"""A bad row is its own thread's problem: planted in SQLite, PostgreSQL and Redis sources, one
kind per thread among healthy threads (all of them in one batch), it is reported as
unreadable with its thread, namespace, checkpoint id and what failed, on the first run and
on every re-run, while every healthy thread is copied exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


from dualsaver import abackfill, backfill, check, repair, repairs_from_report
from dualsaver.redis.codec import Record, WriteEntry, decode_writes, encode_writes
from dualsaver.stores import aopen_saver, native_for, open_saver

from .backfill_support import run_threads

HEALTHY = [f"ok-{n}" for n in range(5)]
KINDS = {  # bad kind -> what the report must say
    "not_a_mapping": "checkpoint is not a mapping but int",
    "unknown_tag": "has an unknown type tag",
    "truncated": "msgpack does not decode",
}
GARBAGE = b"\x07" + b"not a checkpoint at all" * 3  # msgpack decodes it to 7, ignoring the rest


def bad_thread(kind: str) -> str:
    return f"bad-{kind}"


# --------------------------------------------------------------------------- planting


def plant_sqlite(path: Path, kind: str) -> None:
    thread = bad_thread(kind)
    with sqlite3.connect(path) as conn:
        if kind == "not_a_mapping":
            sql = ("UPDATE checkpoints SET type = 'msgpack', checkpoint = ? WHERE rowid ="
                   " (SELECT rowid FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id LIMIT 1 OFFSET 2)")
            cur = conn.execute(sql, (GARBAGE, thread))
        elif kind == "unknown_tag":
            cur = conn.execute("UPDATE writes SET type = 'zzz-tag' WHERE rowid ="
                               " (SELECT rowid FROM writes WHERE thread_id = ? LIMIT 1)", (thread,))
        elif kind == "truncated":
            cur = conn.execute("UPDATE writes SET value = substr(value, 1, length(value) - 3) WHERE rowid ="
                               " (SELECT rowid FROM writes WHERE thread_id = ? AND type = 'msgpack'"
                               " AND length(value) > 8 LIMIT 1)", (thread,))
        else:  # a row that reads fine and that PostgreSQL refuses (NUL in text)
            cur = conn.execute("UPDATE checkpoints SET checkpoint_ns = 'sub' || char(0) || 'x' WHERE rowid ="
                               " (SELECT rowid FROM checkpoints WHERE thread_id = ? AND checkpoint_ns != ''"
                               " LIMIT 1)", (thread,))
        assert cur.rowcount == 1


def plant_postgres(url: str, kind: str) -> None:
    import psycopg

    thread = bad_thread(kind)
    with psycopg.connect(url, autocommit=True) as conn:
        if kind == "not_a_mapping":
            cur = conn.execute("UPDATE checkpoints SET checkpoint = '7'::jsonb WHERE ctid ="
                               " (SELECT ctid FROM checkpoints WHERE thread_id = %s LIMIT 1)", (thread,))
        elif kind == "unknown_tag":
            cur = conn.execute("UPDATE checkpoint_writes SET type = 'zzz-tag' WHERE ctid ="
                               " (SELECT ctid FROM checkpoint_writes WHERE thread_id = %s LIMIT 1)", (thread,))
        else:
            cur = conn.execute("UPDATE checkpoint_writes SET blob = substring(blob from 1 for length(blob) - 3)"
                               " WHERE ctid = (SELECT ctid FROM checkpoint_writes WHERE thread_id = %s"
                               " AND type = 'msgpack' AND length(blob) > 8 LIMIT 1)", (thread,))
        assert cur.rowcount == 1


def plant_redis(saver: Any, kind: str) -> None:
    """Rewrite one stored record or write entry of dualsaver's Redis saver, in its own layout."""
    ids, cp, _, w = saver._keys(bad_thread(kind))
    client = saver.client
    if kind == "not_a_mapping":
        member = client.zrange(ids, 0, 0)[0]
        record = Record.decode(client.hget(cp, member))
        bad = Record(record.parent, record.run_id, record.uses_delta, record.refs, ("msgpack", GARBAGE), record.metadata)
        client.hset(cp, member, bad.encode())
        return
    member, raw = next((m, v) for m, v in client.hgetall(w).items() if v)
    entries = decode_writes(raw)
    first = entries[0]
    tag, data = first.value
    value = ("zzz-tag", data) if kind == "unknown_tag" else (tag, data[:-3])
    entries[0] = WriteEntry(first.task_id, first.idx, first.task_path, first.channel, value)
    client.hset(w, member, encode_writes(entries))


# --------------------------------------------------------------------------- checking


def rows(saver: Any, thread_id: str) -> list:
    return list(native_for(saver).read_thread(thread_id))


def assert_reported(result: Any, kinds: dict[str, str]) -> None:
    assert result.failed == len(kinds), result.summary()
    assert result.unreadable == len(kinds)
    by_thread = {r["thread_id"]: r for r in result.bad_rows}
    assert set(by_thread) == {bad_thread(k) for k in kinds}
    for kind, words in kinds.items():
        row = by_thread[bad_thread(kind)]
        assert words in row["error"], row
        assert row["checkpoint_id"], row  # the row is named, not just its thread
    assert {t for t, _ in result.failures} == {bad_thread(k) for k in kinds}


def assert_copied(source: Any, target: Any, kinds: dict[str, str]) -> None:
    for thread_id in HEALTHY:
        assert rows(target, thread_id) == rows(source, thread_id)
    for kind in kinds:  # the rest of a bad thread is copied too
        readable = [r for r in rows(source, bad_thread(kind)) if not hasattr(r, "error")]
        copied = {r.key for r in rows(target, bad_thread(kind))}
        if kind == "target_refuses":
            readable = [r for r in readable if "\x00" not in r.checkpoint_ns]
        assert readable and {r.key for r in readable} == copied


def run_and_rerun(source: Any, target: Any, state: Path, kinds: dict[str, str]) -> None:
    first = backfill(source, target, state_path=state)
    assert_reported(first, kinds)
    assert first.threads == len(HEALTHY) + len(kinds)
    assert_copied(source, target, kinds)
    again = backfill(source, target, state_path=state)
    assert_reported(again, kinds)  # a bad thread is never marked done: reported every run
    assert again.threads_resumed == len(HEALTHY) and again.checkpoints == 0


def populate(saver: Any, kinds: dict[str, str]) -> None:
    # Healthy threads before and after the bad ones, so they share the bad rows' batch.
    threads = [*HEALTHY[:2], *(bad_thread(k) for k in kinds), *HEALTHY[2:]]
    run_threads(saver, threads, turns=2)


def sqlite_with_bad_rows(tmp_path: Path, kinds: dict[str, str]) -> Path:
    """An SQLite store of healthy threads and one thread per bad kind in `kinds`."""
    path = tmp_path / "old.sqlite"
    with open_saver(f"sqlite:///{path}") as saver:
        populate(saver, kinds)
    for kind in kinds:
        plant_sqlite(path, kind)
    return path


# --------------------------------------------------------------------------- the cases


def test_sqlite_source_into_postgres(tmp_path: Path, pg_url: str) -> None:
    kinds = {**KINDS, "target_refuses": "cannot be written to the target"}
    path = sqlite_with_bad_rows(tmp_path, kinds)
    with open_saver(f"sqlite:///{path}", must_exist=True) as source, open_saver(pg_url) as target:
        run_and_rerun(source, target, tmp_path / "state.sqlite", kinds)


def test_postgres_source_into_sqlite(tmp_path: Path, pg_url: str) -> None:
    with open_saver(pg_url) as saver:
        populate(saver, KINDS)
    for kind in KINDS:
        plant_postgres(pg_url, kind)
    with open_saver(pg_url, must_exist=True) as source, open_saver(f"sqlite:///{tmp_path / 'new.sqlite'}") as target:
        run_and_rerun(source, target, tmp_path / "state.sqlite", KINDS)


def test_redis_source_into_postgres(tmp_path: Path, redis_url: str, pg_url: str) -> None:
    with open_saver(redis_url) as source, open_saver(pg_url) as target:
        populate(source, KINDS)
        for kind in KINDS:
            plant_redis(source, kind)
        run_and_rerun(source, target, tmp_path / "state.sqlite", KINDS)


async def test_async_backfill_isolates_bad_rows_too(tmp_path: Path, pg_url: str) -> None:
    kinds = {**KINDS, "target_refuses": "cannot be written to the target"}
    path = sqlite_with_bad_rows(tmp_path, kinds)
    async with aopen_saver(f"sqlite:///{path}", must_exist=True) as source, aopen_saver(pg_url) as target:
        result = await abackfill(source, target, state_path=tmp_path / "state.sqlite", workers=2)
    assert_reported(result, kinds)
    with open_saver(f"sqlite:///{path}") as source, open_saver(pg_url) as target:
        assert_copied(source, target, kinds)


def test_check_names_the_bad_rows_and_repair_leaves_them_to_a_person(tmp_path: Path, pg_url: str) -> None:
    path = sqlite_with_bad_rows(tmp_path, KINDS)
    with open_saver(f"sqlite:///{path}", must_exist=True) as source, open_saver(pg_url) as target:
        backfill(source, target, state_path=tmp_path / "state.sqlite")
        report = check(source, target)
        unreadable = [d for d in report.divergences if d.kind == "unreadable"]
        assert {d.thread_id for d in report.divergences} == {bad_thread(k) for k in KINDS}
        assert {d.thread_id for d in unreadable} == {bad_thread(k) for k in KINDS}
        for d in unreadable:
            words = KINDS[d.thread_id.removeprefix("bad-")]
            assert d.detail["side"] == "old" and words in str(d.detail["fields"]) and d.checkpoint_id
        result = repair(source, target, repairs=repairs_from_report(report))
        assert {o.thread_id for o in result.outcomes if o.attention} == {bad_thread(k) for k in KINDS}
        assert all(o.action == "copy" for o in result.outcomes)  # never deleted on the target
