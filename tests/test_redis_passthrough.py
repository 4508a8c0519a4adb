"""Copies into and out of dualsaver's Redis saver pass stored bytes through, and its
pipelines are packed in C (`dualsaver.redis._wire`) with redis-py's behaviour kept.

- SQLite -> Redis with one serializer configuration: the channel values SQLite's split gives
  and the writes' bytes go into Redis as they are, not decoded and encoded again. What lands
  is byte for byte what the decoding copy writes (the copy before this), key by key.
- Redis -> PostgreSQL: the writes and the channel values leave Redis undecoded (but the
  primitives PostgreSQL keeps inline), and PostgreSQL holds row for row what the decoding
  copy writes.
- A pipeline, or a single script call, whose script the server lost (SCRIPT FLUSH, a
  restart) loads it and sends those calls again; an error reply raises after every reply was
  read, and the connection serves the next call (sync and async).
- Without hiredis, commands are packed in Python, to the same bytes (hypothesis).
"""

from __future__ import annotations

from pathlib import Path

import hiredis
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ResponseError

import dualsaver.migrate._backfill as backfill_module
from dualsaver.migrate import backfill, read_options
from dualsaver.redis import aopen_redis_saver, open_redis_saver
from dualsaver.redis._wire import pack_in_python
from dualsaver.redis.ops import command, script
from dualsaver.stores import native_for, open_saver
from dualsaver.stores.native import StoredValue
from tests.backfill_support import run_threads

THREADS = [f"t{i}" for i in range(4)]


def _source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    with open_saver(url) as saver:
        run_threads(saver, THREADS, turns=2)  # a subgraph, Send branches, a DeltaChannel, interrupts
    return url


def _contents(client: redis.Redis, saver: object) -> dict[str, object]:
    """Every thread's keys as the saver laid them out, read raw, by role (not by name)."""
    found: dict[str, object] = {}
    for t in THREADS:
        ids, cp, bl, w = saver._keys(t)  # type: ignore[attr-defined]
        found[f"{t}:ids"] = client.zrange(ids, 0, -1, withscores=True)
        for role, key in (("cp", cp), ("bl", bl), ("w", w)):
            found[f"{t}:{role}"] = client.hgetall(key)
    return found


def test_sqlite_to_redis_passes_bytes_through_and_stores_what_decoding_stores(tmp_path, redis_url, monkeypatch):
    source_url = _source(tmp_path)
    client = redis.Redis.from_url(redis_url)
    with open_saver(source_url) as source, open_redis_saver(redis_url, prefix="through") as through, \
            open_redis_saver(redis_url, prefix="decoded") as decoded:
        assert read_options(native_for(source), native_for(through)) == {"encoded": True, "stored_values": True}
        copied = backfill(source, through, state_path=tmp_path / "through.state", resume=False)
        monkeypatch.setattr(backfill_module, "read_options", lambda source, target: {})  # decode and encode
        again = backfill(source, decoded, state_path=tmp_path / "decoded.state", resume=False)
        assert copied.failed == again.failed == 0 and copied.checkpoints == again.checkpoints > 0
        assert _contents(client, through) == _contents(client, decoded)
        assert any(_contents(client, through)[f"{t}:w"] for t in THREADS)  # writes were compared


def _rows(url: str) -> dict[str, list[tuple]]:
    """PostgreSQL's three tables, every row, in key order."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4").fetchall()
                for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")}


def test_redis_to_postgres_passes_bytes_through_and_stores_what_decoding_stores(
    tmp_path, redis_url, pg_url_factory, monkeypatch
):
    source_url = _source(tmp_path)
    through_url, decoded_url = pg_url_factory(), pg_url_factory()
    with open_saver(source_url) as source, open_redis_saver(redis_url, prefix="src") as hot, \
            open_saver(through_url) as through, open_saver(decoded_url) as decoded:
        backfill(source, hot, state_path=tmp_path / "in.state", resume=False)
        hot_store = native_for(hot)
        assert read_options(hot_store, native_for(through)) == {"encoded": True, "stored_values": True}
        read = [item for t in THREADS for item in hot_store.read_thread(t, encoded=True, stored_values=True)]
        assert any(type(v) is StoredValue for item in read for v in item.checkpoint["channel_values"].values())
        assert all(w.typed is not None for item in read for w in item.writes)
        copied = backfill(hot, through, state_path=tmp_path / "through.state", resume=False)
        monkeypatch.setattr(backfill_module, "read_options", lambda source, target: {})  # decode and encode
        again = backfill(hot, decoded, state_path=tmp_path / "decoded.state", resume=False)
        assert copied.failed == again.failed == 0 and copied.exact and copied.checkpoints == again.checkpoints > 0
    assert _rows(through_url) == _rows(decoded_url)


def test_a_pipeline_loads_a_lost_script_and_keeps_its_connection_in_step(redis_url):
    with open_redis_saver(redis_url, prefix="wire") as saver:
        io = saver._io.targets["redis"]
        client = redis.Redis.from_url(redis_url)
        client.script_flush()
        keys = saver._keys("one")
        replies = io.pipeline([command("SET", "wire:a", "1"), script("dump", keys), command("GET", "wire:a")])
        assert replies[0] is True or replies[0] == b"OK"
        assert replies[2] == b"1"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            io.pipeline([command("LPUSH", "wire:a", "x"), command("SET", "wire:b", "2")])
        assert client.get("wire:b") == b"2"  # the calls after the error ran
        for _ in range(3):  # every pooled connection answers its own calls
            assert io.pipeline([command("GET", "wire:a"), command("GET", "wire:b")]) == [b"1", b"2"]
        client.script_flush()  # a single script call (a put, a read) goes the same way
        assert io.script("dump", keys, ()) == replies[1]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            io.script("dump", (keys[0], "wire:a", *keys[2:]), ())  # HGETALL of a string


async def test_an_async_pipeline_loads_a_lost_script_and_keeps_its_connection_in_step(redis_url):
    async with aopen_redis_saver(redis_url, prefix="awire") as saver:
        io = saver._io.targets["redis"]
        client = redis.Redis.from_url(redis_url)
        client.script_flush()
        keys = saver._keys("one")
        replies = await io.apipeline([command("SET", "awire:a", "1"), script("dump", keys), command("GET", "awire:a")])
        assert replies[2] == b"1"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await io.apipeline([command("LPUSH", "awire:a", "x"), command("SET", "awire:b", "2")])
        assert client.get("awire:b") == b"2"
        for _ in range(3):
            assert await io.apipeline([command("GET", "awire:a"), command("GET", "awire:b")]) == [b"1", b"2"]
        client.script_flush()
        assert await io.ascript("dump", keys, ()) == replies[1]


@given(st.lists(st.one_of(st.binary(), st.text(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                          st.floats(allow_nan=False, allow_infinity=False)), min_size=1, max_size=8))
def test_the_python_packer_packs_as_hiredis_does(args):
    """Where redis-py runs without hiredis, commands are packed in Python: the same bytes."""
    assert pack_in_python(args) == hiredis.pack_command(tuple(args))
