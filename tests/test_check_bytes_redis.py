"""The check's byte path with dualsaver's Redis saver on one side: its blobs (every channel
value, primitives too) reduce to the digests SQLite's documents and PostgreSQL's blobs
reduce to, so a clean pair is settled from its bytes, and the verdict is the decoded path's,
kind for kind (planted divergences, random histories, standalone and cluster, sync and async)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import ormsgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dualsaver.checker import acheck, check
from dualsaver.stores import aopen_saver, native_for, open_saver
from dualsaver.stores.native import StoredWrite
from tests import check_support as cs
from tests.test_check import PLANTS, THREADS, identities, plant, sqlite_url
from tests.test_check_bytes import SLOW, histories, record, verdicts, with_set_write


def all_by_bytes(report, threads: int) -> bool:
    return report.summary["compared"] == {"by_bytes": threads, "decoded": 0}


# an encrypted saver: compared by its decrypted bytes
@pytest.mark.parametrize("server, serde", [("redis_url", None), ("redis_cluster_url", None), ("redis_url", "encrypted")])
def test_a_clean_sqlite_to_redis_pair_is_settled_by_its_bytes_either_way(request, server, serde, sqlite_path):
    url, redis_serde = request.getfixturevalue(server), cs.encrypted_serde() if serde else None
    with open_saver(sqlite_url(sqlite_path)) as sqlite, open_saver(url, serde=redis_serde) as redis:
        cs.populate(sqlite, THREADS)  # subgraphs, an interrupt, parallel Sends
        cs.clone(sqlite, redis)
        for old, new in ((sqlite, redis), (redis, sqlite)):
            report = check(old, new)
            assert report.clean and all_by_bytes(report, len(THREADS)), report.to_json()
        cs.rewrite_thread(redis, "t-b", lambda rows: [cs.with_metadata(rows[0]), *rows[1:]])
        by_bytes, decoded = verdicts(sqlite, redis)
    assert identities(by_bytes) == identities(decoded) and {i[0] for i in identities(decoded)} == {"metadata_mismatch"}
    assert by_bytes.summary["compared"] == {"by_bytes": len(THREADS) - 1, "decoded": 1}


def test_a_postgres_to_redis_pair_is_settled_by_its_bytes(pg_url, redis_url):
    with open_saver(pg_url) as old, open_saver(redis_url) as new:
        cs.populate(old, THREADS, turns=2)
        cs.clone(old, new)
        report = check(old, new)
    assert report.clean and all_by_bytes(report, len(THREADS)), report.to_json()


async def test_async_redis_check_compares_bytes_too(redis_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(redis_url) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        cs.rewrite_thread(new, "t-c", lambda rows: rows[:-1])
        expected = identities(check(old, new, compare="decoded"))
    async with aopen_saver(sqlite_url(sqlite_path)) as old, aopen_saver(redis_url) as new:
        report = await acheck(old, new, workers=2)
    assert identities(report) == expected and len(expected) == 1
    assert report.summary["compared"] == {"by_bytes": len(THREADS) - 1, "decoded": 1}


def test_a_redis_pair_with_other_serializers_is_read_decoded(redis_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(redis_url, serde=cs.pickling_serde()) as new:
        assert native_for(old).prints_key != native_for(new).prints_key
        cs.populate(old, THREADS)
        cs.clone(old, new)
        report = check(old, new)
    assert report.clean and report.summary["compared"] == {"by_bytes": 0, "decoded": len(THREADS)}


@settings(SLOW, max_examples=12)
@given(data=st.data())
def test_planted_divergences_against_redis_found_by_the_byte_path_with_their_kind(
    same_pair_old, redis_server, tmp_path, data
):
    old_file, rows = same_pair_old
    chosen = data.draw(st.lists(st.sampled_from(range(len(rows))), unique=True, max_size=4), label="rows")
    row_plants = []
    for n in chosen:
        kind, variant = data.draw(st.sampled_from(PLANTS))
        # only SQLite's rows are corrupted here; and a planted value lands in a Redis blob that
        # its neighbours share by channel version (so more than one row, or none, would differ:
        # the decoded path says so too), where SQLite keeps each checkpoint's values whole
        one_row = kind == "unreadable" or (kind, variant) == ("checkpoint_mismatch", "value")
        side = "old" if one_row else data.draw(st.sampled_from(["old", "new"]))
        row_plants.append((*rows[n], kind, variant, side))
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    paths = {"old": work / "old.sqlite"}
    shutil.copy(old_file, paths["old"])
    redis_server.flushall()
    with open_saver(sqlite_url(paths["old"])) as old, open_saver(redis_server.url) as new:
        cs.clone(old, new)
        expected = plant(old, new, paths, row_plants)
        by_bytes, decoded = verdicts(old, new)
    assert identities(by_bytes) == identities(decoded) == expected, by_bytes.to_json()
    assert [d.to_dict() for d in by_bytes.divergences] == [d.to_dict() for d in decoded.divergences]
    touched = {t for t, *_ in row_plants}
    assert by_bytes.summary["compared"]["by_bytes"] == len(set(THREADS) - touched)


@settings(SLOW, max_examples=30)
@given(history=histories())
def test_random_rows_held_alike_are_settled_by_their_bytes(redis_url, tmp_path, history):
    rows, _ = history  # every kind of value the strategy draws (None, bytes, nested, ...)
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "old.sqlite"
    with open_saver(sqlite_url(path)) as old, open_saver(redis_url) as new:
        for t in ("h0", "h1"):
            new.delete_thread(t)
        native_for(old).write_checkpoints(rows)
        native_for(new).write_checkpoints(rows)
        report = check(old, new, backoff=(0,))
    assert report.clean and all_by_bytes(report, 2), report.to_json()


@pytest.fixture(scope="module")
def same_pair_old(tmp_path_factory) -> tuple[Path, list[tuple[str, int]]]:
    """old.sqlite from a real graph, and every (thread, row) it holds."""
    path = tmp_path_factory.mktemp("redis-pair") / "old.sqlite"
    with open_saver(sqlite_url(path)) as old:
        cs.populate(old, THREADS)
        rows = [(t, i) for t in THREADS for i in range(len(cs.items(old, t)))]
    return path, rows


def test_a_set_in_a_write_that_redis_encodes_in_another_order_is_settled_by_its_bytes(redis_url, sqlite_path):
    members = {"plan", "n3", "x"}
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(redis_url) as new:
        # the order Redis's writer will put them in (it encodes the value itself), and SQLite the other
        written = ormsgpack.unpackb(new.serde.dumps_typed(members)[1], ext_hook=lambda _, data: ormsgpack.unpackb(data))
        order = list(reversed(written[2]))
        row = record("t", 0, {"a": [1, 2]}, [])
        native_for(old).write_checkpoints([with_set_write(row, order, native_for(old).serde_key)])
        native_for(new).write_checkpoints([dataclasses.replace(row, writes=(StoredWrite("task", "~", 0, "tags", members),))])
        report = check(old, new)
    assert report.clean and all_by_bytes(report, 1), report.to_json()


@pytest.mark.parametrize("page", [2, 1000])
def test_a_thread_read_whole_or_in_pages_reduces_to_the_same_digests(redis_url, sqlite_path, monkeypatch, page):
    """On the byte path a thread of one page is read whole (its hashes, each blob once), a
    longer one page by page through the read script (each blob once a page, as the
    checkpoint names it). With pages of 2 most threads take the second way, with pages of
    1,000 all take the first: the same threads settle by bytes, and the same divergence is
    found, kind for kind, as the decoded path finds it."""
    from dualsaver.stores import _redis

    dumped = []
    whole = _redis._dumped
    monkeypatch.setattr(_redis, "PAGE", page)
    monkeypatch.setattr(_redis, "_dumped", lambda reply: dumped.append(1) or whole(reply))
    with open_saver(sqlite_url(sqlite_path)) as sqlite, open_saver(redis_url) as redis:
        cs.populate(sqlite, THREADS)
        cs.clone(sqlite, redis)
        sizes = [len(cs.items(sqlite, t)) for t in THREADS]
        report = check(sqlite, redis)
        assert report.clean and all_by_bytes(report, len(THREADS)), report.to_json()
        assert len(dumped) == sum(n <= page for n in sizes) and any(n > 2 for n in sizes)
        cs.rewrite_thread(redis, "t-b", lambda rows: [*rows[:-1], cs.with_metadata(rows[-1])])
        by_bytes, decoded = verdicts(sqlite, redis)
    assert identities(by_bytes) == identities(decoded) and {i[0] for i in identities(decoded)} == {"metadata_mismatch"}
    assert by_bytes.summary["compared"] == {"by_bytes": len(THREADS) - 1, "decoded": 1}
