"""The check reads threads in batches (`read_threads`) and compares digests of stored bytes
(`Printed`, `dualsaver.stores._prints`): a batch read gives exactly what reading each thread
gives, across keyset pages that cut through threads, in SQLite and PostgreSQL; the two stores'
digests agree on equal rows; the check's verdict across batches is the decoded one."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import ormsgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dualsaver.checker import acheck, check
from dualsaver.stores import aopen_saver, native_for, open_saver
from dualsaver.stores._sql import SyncSqlStore
from dualsaver.stores.native import Printed, loads_json
from tests import check_support as cs
from tests.test_check import identities, sqlite_url
from tests.test_check_bytes import record, value

SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# thread ids whose order differs between byte-wise, code-point and locale collations
thread_ids = st.lists(st.sampled_from(["a", "B", "b", "a-1", "a1", "é", "z", "Ω", "t\U0001f600", "t\uffff"]),
                      min_size=1, max_size=6, unique=True)


@st.composite
def stores_rows(draw):
    """Rows of several threads (1-4 checkpoints each, random values and writes)."""
    rows = []
    for t in draw(thread_ids):
        for n in range(draw(st.integers(1, 4))):
            values = draw(st.dictionaries(st.sampled_from("abc"), value, max_size=3))
            rows.append(record(t, n, values, draw(st.lists(value, max_size=2))))
    assume(not any(has_nul(r.checkpoint) for r in rows))  # JSONB cannot hold NUL in text
    return rows


def has_nul(v) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(has_nul(k) or has_nul(x) for k, x in v.items())
    return isinstance(v, list) and any(has_nul(x) for x in v)


@settings(SLOW, max_examples=25)
@given(rows=stores_rows(), page=st.integers(1, 5), asked=st.data())
def test_a_batch_read_is_each_thread_read_in_turn(pg_url, tmp_path, monkeypatch, rows, page, asked):
    monkeypatch.setattr("dualsaver.stores._sql.MANY_THREADS_PAGE", page)  # pages cut through threads
    monkeypatch.setattr("dualsaver.stores._sqlite.MAX_IDS", 2)  # and SQLite's queries through the ids
    written = sorted({r.thread_id for r in rows})
    ids = asked.draw(st.lists(st.sampled_from([*written, "absent"]), min_size=1, unique=True), label="ids")
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "s.sqlite"
    with open_saver(sqlite_url(path)) as lite, open_saver(pg_url) as pg:
        for t in written:
            pg.delete_thread(t)
        prints, decoded = {}, {}
        for saver in (lite, pg):
            store = native_for(saver)
            store.write_checkpoints(rows)
            decoded[saver] = [item for t in sorted(ids) for item in store.read_thread(t)]
            assert list(store.read_threads(ids)) == decoded[saver]
            prints[saver] = list(store.read_threads(ids, prints=True))
            assert [(p.thread_id, p.checkpoint_ns, p.checkpoint_id) for p in prints[saver]] == [
                i.key for i in decoded[saver]
            ]
    assert all(type(p) is Printed for p in prints[lite])
    # Equal records, equal digests, whatever the layout (JSONB may write a number otherwise:
    # 1e16 comes back an integer, a record that differs, which the check decodes)
    for a, b, x, y in zip(prints[lite], prints[pg], decoded[lite], decoded[pg]):
        assert (a == b) == (exactly(x) == exactly(y)), (x, y)


def exactly(item) -> str:
    """A record as sorted JSON: 1 and 1.0 differ, key order does not."""
    writes = [(w.task_id, w.task_path, w.idx, w.channel, w.value) for w in item.writes]
    parts = (item.parent_checkpoint_id, item.checkpoint, item.metadata, writes)
    return json.dumps(parts, sort_keys=True, default=repr)


def test_sqlite_reads_a_thread_whose_id_holds_nul_in_a_batch(sqlite_path):
    rows = [record(t, n, {"a": [n]}, [n]) for t in ("a", "nul\x00id", "nul") for n in range(2)]
    with open_saver(sqlite_url(sqlite_path)) as lite:
        store = native_for(lite)
        store.write_checkpoints(rows)
        ids = ["nul\x00id", "a", "nul"]
        assert list(store.read_threads(ids)) == [i for t in sorted(ids) for i in store.read_thread(t)]
        printed = [p.thread_id for p in store.read_threads(ids, prints=True)]
        assert printed == ["a", "a", "nul", "nul", "nul\x00id", "nul\x00id"]


@settings(SLOW, max_examples=40)
@given(doc=st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False)
    | st.text(alphabet="0123456789:,[ -x\"")  # digits in strings, where a number may start
    | st.from_regex(r"[-x\"]?[0-9]{19,40}", fullmatch=True),  # long runs, as a channel version's
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
))
def test_loads_json_reads_what_json_loads_reads(doc):
    for text in (json.dumps(doc), json.dumps(doc, indent=1), json.dumps(doc, separators=(",", ":"))):
        assert repr(loads_json(text)) == repr(json.loads(text))  # repr: 1 and 1.0, inf and nan told apart


def test_long_numbers_are_not_read_as_floats():
    big = 2**70
    for text in (f"{big}", f"[-{big}]", f'{{"a": {big}}}', f'{{"a":{big}}}', f'[1,\n{big}]'):
        assert loads_json(text) == json.loads(text) and type(loads_json(text)) is type(json.loads(text))


@pytest.mark.parametrize("workers", [1, 3])
def test_the_verdict_across_batches_is_the_one_thread_by_thread(pg_url, sqlite_path, monkeypatch, workers):
    threads = [f"batch-{i}" for i in range(7)]
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, threads)
        cs.clone(old, new)
        cs.rewrite_thread(new, "batch-3", lambda rows: rows[:-1])  # one thread diverges
        with monkeypatch.context() as hidden:  # stores that read one thread at a time
            hidden.delattr(SyncSqlStore, "read_threads")
            one_by_one = check(old, new, backoff=(0,))
        monkeypatch.setattr("dualsaver.checker._run.BATCH", 2)
        by_bytes = check(old, new, backoff=(0,), workers=workers)
        decoded = check(old, new, backoff=(0,), workers=workers, compare="decoded")
    assert {i[1] for i in identities(one_by_one)} == {"batch-3"}
    assert one_by_one.summary["compared"] == {"by_bytes": 0, "decoded": 7}  # no digests without read_threads
    assert identities(by_bytes) == identities(decoded) == identities(one_by_one)
    assert [d.to_dict() for d in decoded.divergences] == [d.to_dict() for d in one_by_one.divergences]
    assert by_bytes.summary["compared"] == {"by_bytes": 6, "decoded": 1}
    assert decoded.summary["compared"] == {"by_bytes": 0, "decoded": 7}
    assert by_bytes.summary["threads_compared"] == decoded.summary["threads_compared"] == 7
    # a batch stops at the first thread past its checkpoint budget; the rest are read alone
    monkeypatch.setattr("dualsaver.checker._run.BATCH_CHECKPOINTS", 1)
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        capped = check(old, new, backoff=(0,), workers=workers)
    assert identities(capped) == identities(one_by_one)
    assert capped.summary["compared"] == {"by_bytes": 4, "decoded": 3}  # the first of each batch of two


async def test_async_check_reads_batches_too(pg_url, sqlite_path, monkeypatch):
    monkeypatch.setattr("dualsaver.checker._run.BATCH", 3)
    threads = [f"abatch-{i}" for i in range(5)]
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, threads)
        cs.clone(old, new)
        cs.rewrite_thread(new, "abatch-4", lambda rows: rows[:-1])
    async with aopen_saver(sqlite_url(sqlite_path)) as old, aopen_saver(pg_url) as new:
        report = await acheck(old, new, workers=2, backoff=(0,))
    assert {i[1] for i in identities(report)} == {"abatch-4"}
    assert report.summary["compared"] == {"by_bytes": 4, "decoded": 1}


def test_a_set_is_compared_by_its_members_not_their_order():
    from dualsaver.stores._prints import document, document_values, value_digest
    from dualsaver.stores.serde import Plaintext

    def value(name: str, members: list) -> dict:  # as JsonPlusSerializer writes a set: ext 0, (module, name, members)
        return {"tags": ormsgpack.Ext(0, ormsgpack.packb(["builtins", name, members]))}

    def apart(v: dict):  # PostgreSQL: the value as its own blob
        return ormsgpack.packb(value_digest(("msgpack", ormsgpack.packb(v)), Plaintext(None)))

    def in_document(v: dict):  # SQLite: the value inside a whole checkpoint's document
        return ormsgpack.packb(document_values(document(ormsgpack.packb({"channel": v})))["channel"])

    members = ["n1", "plan", "zz", "a", 7]
    same = apart(value("set", members))
    assert ormsgpack.packb(value("set", members)) != ormsgpack.packb(value("set", members[::-1]))  # else no proof
    assert apart(value("set", members[::-1])) == same == in_document(value("set", members[::-1]))
    assert apart(value("set", members[1:])) != same
    assert apart(value("frozenset", members)) != same
    assert apart(value("list", members[::-1])) != apart(value("list", members))  # only sets
    assert in_document(value("list", members)) == apart(value("list", members))


def test_postgres_blobs_read_in_pages_and_forgotten_between_batches(pg_url, sqlite_path, monkeypatch):
    # Each thread's blobs are digested once, a page of blobs at a time; past the cache's size
    # the digests are forgotten and read again. Tiny pages and cache cross every boundary.
    threads = [f"blobs-{i}" for i in range(5)]
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, threads, turns=2)
        cs.clone(old, new)

        def changed(rows):  # one channel value of one middle checkpoint, kept apart as a blob
            row = rows[len(rows) // 2]
            values = dict(row.checkpoint["channel_values"])
            channel = next(c for c, v in values.items() if isinstance(v, (list, dict)))
            values[channel] = ["not", "the", "same"]
            edited = dataclasses.replace(row, checkpoint={**row.checkpoint, "channel_values": values})
            return [*rows[: len(rows) // 2], edited, *rows[len(rows) // 2 + 1 :]]

        cs.rewrite_thread(new, "blobs-2", changed)
        decoded = check(old, new, backoff=(0,), compare="decoded")
        monkeypatch.setattr("dualsaver.stores._postgres.BLOB_PAGE", 2)
        monkeypatch.setattr("dualsaver.stores._postgres.BLOB_CACHE", 3)
        monkeypatch.setattr("dualsaver.stores._sql.MANY_THREADS_PAGE", 3)
        by_bytes = check(old, new, backoff=(0,))
    assert {(i[0], i[1]) for i in identities(decoded)} == {("checkpoint_mismatch", "blobs-2")}
    assert [d.to_dict() for d in by_bytes.divergences] == [d.to_dict() for d in decoded.divergences]
    assert by_bytes.summary["compared"] == {"by_bytes": 4, "decoded": 1}
