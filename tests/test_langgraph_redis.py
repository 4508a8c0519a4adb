"""The official LangGraph Redis saver as a store: a real Redis 8 with RedisJSON and
RediSearch, its URL, and dualsaver's native reader and writer for its own layout.

The writer is judged against the saver itself: a history the official saver wrote live is
copied natively into a second server, and the two servers' keys are compared raw.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import WRITES_IDX_MAP, empty_checkpoint, writes_sort_key
from langgraph.checkpoint.redis import RedisSaver
from langgraph.checkpoint.redis.aio import AsyncRedisSaver
from langgraph.types import Send

from dualsaver import NotReplicated, StoreURLError, abackfill, acheck, backfill, check
from dualsaver.checker.canonical import canonical
from dualsaver.embedded import EmbeddedRedisStack
from dualsaver.redis import open_redis_saver
from dualsaver.redis.url import parse_redis_url
from dualsaver.stores import StoredCheckpoint, StoredWrite, Unreadable, aopen_saver, native_for, open_saver
from tests.graphs import build_agent, config, run_turn
from tests.langgraph_redis_support import canonical_item, plain_client, raw_keys
from tests.test_redis_migration import make_history


def test_the_embedded_stack_is_redis_8_with_json_and_search(redis_stack: EmbeddedRedisStack) -> None:
    assert {"ReJSON", "search"} <= redis_stack.modules()
    assert redis_stack.command("INFO", "server").split("redis_version:")[1].startswith("8.")
    assert redis_stack.password not in repr(redis_stack)


# ----------------------------------------------------------------------------- URLs


def test_langgraph_urls_open_the_official_saver_with_its_options(redis_stack: EmbeddedRedisStack) -> None:
    redis_stack.flushall()
    url = redis_stack.langgraph_url + "?default_ttl=5&refresh_on_read=true&checkpoint_prefix=cp&socket_timeout=5"
    with open_saver(url) as saver:
        assert type(saver) is RedisSaver
        assert saver.ttl_config == {"default_ttl": 5.0, "refresh_on_read": True}
        assert saver._checkpoint_prefix == "cp" and saver._key_registry is not None  # set up
        assert b"cp" in plain_client(url).execute_command("FT._LIST")
    target = parse_redis_url("rediss+sentinel+langgraph://:pw@a:1,b/svc/2?wait=1&wait_timeout=0.5")
    assert (target.tls, target.langgraph, target.sentinel, target.hosts, target.db) == (
        True, True, "svc", [("a", 1), ("b", 26379)], 2
    )
    assert (target.wait, target.wait_timeout) == (1, 0.5)


async def test_async_open_gives_the_async_saver(langgraph_redis_url: str) -> None:
    async with aopen_saver(langgraph_redis_url) as saver:
        assert type(saver) is AsyncRedisSaver and saver.loop is not None
        await saver.aput(*_put_args("a"))
        assert (await saver.aget_tuple(config("a"))) is not None


@pytest.mark.parametrize(
    "url, reason",
    [
        ("redis+langgraph://:topsecret@127.0.0.1:1/0?prefix=x", "unknown option 'prefix'"),
        ("redis+langgraph://:topsecret@127.0.0.1:1/0?default_ttl=soon", "bad value"),
        ("redis+cluster+langgraph://:topsecret@a:1,b:2", "unknown store scheme"),
        ("redis+sentinel+langgraph://:topsecret@a:1", "names its service"),
        ("redis+langgraph://:topsecret@127.0.0.1:1/0", "cannot connect"),
    ],
)
def test_bad_langgraph_urls_fail_in_one_line_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(StoreURLError) as err, open_saver(url):
        pass
    assert reason in str(err.value) and "topsecret" not in str(err.value) and "\n" not in str(err.value)


def test_a_source_must_hold_the_index_and_the_serializer_is_the_savers(langgraph_redis_url: str) -> None:
    with pytest.raises(StoreURLError, match="no LangGraph checkpoint"):
        with open_saver(langgraph_redis_url, must_exist=True):
            pass
    with pytest.raises(StoreURLError, match="its own serializer"), open_saver(langgraph_redis_url, serde=object()):
        pass
    with pytest.raises(StoreURLError, match="official saver"), open_redis_saver(langgraph_redis_url):
        pass


# ----------------------------------------------------------------------------- the writer


def _put_args(thread_id: str, ns: str = "", marker: str = "m") -> tuple:
    cp = empty_checkpoint()
    cp["channel_values"] = {"marker": marker}
    cp["channel_versions"] = {"marker": "00000000000000000000000000000001.0.5"}
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}, cp, {"source": "input", "step": -1}, cp["channel_versions"]


_CLOCKED = ("checkpoint_ts", "has_writes")


def _unclocked(keys: dict) -> dict:
    return {k: ({f: x for f, x in v.items() if f not in _CLOCKED} if isinstance(v, dict) else v) for k, v in keys.items()}


def test_a_copy_stores_what_the_official_saver_stored(langgraph_redis_url: str, langgraph_redis_url_b: str) -> None:
    """History written live by the official saver (graphs with a subgraph, Send branches,
    interrupts, a DeltaChannel, messages), copied natively to a second server: every key
    and document is the same, but for two fields that depend on timing, not on the calls:
    `checkpoint_ts` (the saver's clock at put time; the copy uses the checkpoint's own ts)
    and `has_writes`. LangGraph may send a checkpoint's writes before its put lands (async
    durability), and the put then resets the flag the writes had set, so the saver's own
    get_tuple no longer loads those writes; the copy sets it whenever writes exist."""
    with open_saver(langgraph_redis_url) as live, open_saver(langgraph_redis_url_b) as copy:
        threads = make_history(live)
        result = backfill(live, copy, state_path=":memory:")
        assert result.exact and (result.threads, result.failed, result.unreadable) == (len(threads), 0, 0)
        source, copied = raw_keys(langgraph_redis_url), raw_keys(langgraph_redis_url_b)
        assert _unclocked(copied) == _unclocked(source)
        assert any(k.startswith("write_keys_zset:") for k in source) and any("_latest:" in k for k in source)
        for key, doc in source.items():
            if key.startswith("checkpoint:"):
                assert abs(copied[key]["checkpoint_ts"] - doc["checkpoint_ts"]) < 5000
                has_writes = "write_keys_zset:" + key.partition(":")[2] in source
                assert copied[key]["has_writes"] is has_writes and doc["has_writes"] in (has_writes, False)
        assert backfill(live, copy, state_path=":memory:", resume=False).checkpoints == 0
        assert raw_keys(langgraph_redis_url_b) == copied  # a re-run adds and changes nothing
        assert check(live, copy).clean


async def test_async_copy_into_the_official_saver_is_exact(tmp_path: Path, langgraph_redis_url: str) -> None:
    async with aopen_saver(f"sqlite:///{tmp_path / 'a.sqlite'}") as old, aopen_saver(langgraph_redis_url) as new:
        app = build_agent(old)
        await app.ainvoke({"topic": "x"}, config("wait"))  # left at its interrupt
        result = await abackfill(old, new, state_path=":memory:")
        assert result.exact and result.checkpoints > 0 and result.failed == 0
        assert (await acheck(old, new)).clean
        from langgraph.types import Command

        final = await build_agent(new).ainvoke(Command(resume=True), config("wait"))
        assert final["approved"] is True and final["log"][-1] == "finish"


# ----------------------------------------------------------------------------- round trips

_ids = st.sampled_from(["t", "T", "a:b", "x,y", "", "ü {}", "dup"])
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8) | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_objects = st.sampled_from(
    [HumanMessage("hi", id="h1"), AIMessage("yo", id="a1"), Send("worker", {"topic": "t-0"}), {1, 2}]
)


@st.composite
def _histories(draw: st.DrawFn) -> list[StoredCheckpoint]:
    items = []
    for n in range(draw(st.integers(1, 4))):
        thread_id = draw(_ids)
        ns = draw(st.sampled_from(["", "sub:1", "sub:1|inner:2"]))
        checkpoint_id = f"1f0{n:05d}-0000-6000-8000-{draw(st.integers(0, 10**6)):012d}"
        channels = draw(st.dictionaries(st.sampled_from(["a", "b", "messages"]), _values | _objects, max_size=3))
        checkpoint = {"v": 4, "id": checkpoint_id, "ts": "2026-01-01T00:00:00+00:00", "channel_values": channels,
                      "channel_versions": dict.fromkeys(channels, f"{1:032}.0.{n}"), "versions_seen": {},
                      "updated_channels": sorted(channels)}
        writes = []
        for task in range(draw(st.integers(0, 2))):
            channels_ = draw(st.lists(st.sampled_from(["a", "__interrupt__", "__resume__", "__pregel_tasks"]), max_size=3, unique=True))
            writes += [
                StoredWrite(f"task-{task}", f"~__pregel_pull, n{task}", WRITES_IDX_MAP.get(ch, i), ch, draw(_values | _objects))
                for i, ch in enumerate(channels_)
            ]
        writes.sort(key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))
        # LangGraph's savers drop NUL characters from metadata strings (get_checkpoint_metadata),
        # and the official saver drops them from its metadata JSON: none reach a store. A lone
        # surrogate cannot be written either: the official saver's own put fails on one
        # (`_dump_metadata` decodes its JSON as UTF-8), and so does the writer that mirrors it.
        note = draw(st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=5))
        metadata = {"source": "loop", "step": n, "parents": {}, "note": note}
        items.append(StoredCheckpoint(thread_id, ns, checkpoint_id, draw(st.none() | st.just("1f0-parent")), checkpoint, metadata, tuple(writes)))
    return list({i.key: i for i in items}.values())


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=_histories())
def test_written_natively_read_back_by_meaning_by_both_readers(redis_stack: EmbeddedRedisStack, items) -> None:
    """What the writer stores, dualsaver's reader and the official saver's own get_tuple read
    back by meaning (JSON keeps no tuples and no int keys: canonical forms compare); a second
    write adds nothing."""
    redis_stack.flushall()
    with open_saver(redis_stack.langgraph_url) as saver:
        store = native_for(saver)
        store.allow_lossy = {"search-syntax"}  # ids its search cannot find (`x,y`) on purpose: readers must read them
        assert store.write_checkpoints(items) == (len(items), sum(len(i.writes) for i in items))
        assert store.write_checkpoints(items) == (0, 0)
        by_key = {i.key: i for i in items}
        read = {i.key: i for t in store.thread_ids() for i in store.read_thread(t)}
        assert sorted(store.thread_ids()) == list(store.thread_ids()) == sorted({k[0] for k in by_key})
        assert {k: canonical_item(v) for k, v in read.items()} == {k: canonical_item(v) for k, v in by_key.items()}
        for item in items:
            tup = saver.get_tuple({"configurable": {"thread_id": item.thread_id, "checkpoint_ns": item.checkpoint_ns,
                                                    "checkpoint_id": item.checkpoint_id}})
            assert canonical(tup.checkpoint["channel_values"]) == canonical(item.checkpoint["channel_values"])
            expected = sorted(map(repr, canonical([[w.task_id, w.channel, w.value] for w in item.writes])))
            assert sorted(map(repr, canonical([list(w) for w in tup.pending_writes]))) == expected


def test_thread_ids_are_exact_where_tag_search_is_not(langgraph_redis_url: str) -> None:
    """Tag search ignores case and splits on ','; the reader still reads each thread alone."""
    threads = ["Thread", "thread", "a", "a:b", "x,y", "", "ü {}"]
    with open_saver(langgraph_redis_url) as saver:
        for t in threads:
            saver.put(*_put_args(t, marker=f"of {t}"))
        store = native_for(saver)
        assert list(store.thread_ids()) == sorted(threads)
        for t in threads:
            (item,) = store.read_thread(t)
            assert item.thread_id == t and item.checkpoint["channel_values"] == {"marker": f"of {t}"}
        store.delete_thread("a")
        store.delete_thread("x,y")
        assert list(store.thread_ids()) == sorted(set(threads) - {"a", "x,y"})
        left = {k for k in raw_keys(langgraph_redis_url) if k.startswith(("checkpoint:a:", "checkpoint_latest:a:"))}
        assert left == {k for k in raw_keys(langgraph_redis_url) if k.startswith(("checkpoint:a:b:", "checkpoint_latest:a:b:"))}
        assert saver.get_tuple(config("a:b")) is not None and saver.get_tuple(config("a")) is None


# ----------------------------------------------------------------------------- TTL


def test_a_copy_keeps_the_remaining_ttl_or_gets_the_targets(langgraph_redis_url: str, langgraph_redis_url_b: str) -> None:
    with open_saver(langgraph_redis_url + "?default_ttl=10") as source:  # 600 s per key
        run_turn(build_agent(source), "t", "alpha")
        with plain_client(langgraph_redis_url) as client:
            for key in client.scan_iter("checkpoint:*"):
                client.pexpire(key, 120_000)  # as if written 8 minutes ago
        with open_saver(langgraph_redis_url_b) as copy:  # no TTL of its own: keeps the source's
            (item, *_) = native_for(source).read_thread("t")
            assert 100 < item.expires_at - time.time() <= 120
            backfill(source, copy, state_path=":memory:")
            with plain_client(langgraph_redis_url_b) as client:
                ttls = {k.decode(): client.pttl(k) for k in client.scan_iter()}
            checkpoints = {k: v for k, v in ttls.items() if k.startswith("checkpoint:")}
            assert checkpoints and all(100_000 < v <= 120_000 for v in checkpoints.values())
    with open_saver("sqlite:///:memory:") as lite, open_saver(langgraph_redis_url_b + "?default_ttl=1") as target:
        run_turn(build_agent(lite), "u", "beta")
        backfill(lite, target, state_path=":memory:")  # no source expiry: the target's default_ttl
        with plain_client(langgraph_redis_url_b) as client:
            ttls = [client.pttl(k) for k in client.scan_iter("*:u:*")]
        assert ttls and all(0 < v <= 60_000 for v in ttls)


# ----------------------------------------------------------------------------- unreadable


def test_corrupted_documents_are_reported_unreadable_and_the_rest_is_copied(
    langgraph_redis_url: str, langgraph_redis_url_b: str
) -> None:
    with open_saver(langgraph_redis_url) as source, open_saver(langgraph_redis_url_b) as target:
        agent = build_agent(source)
        for t in ("good", "bad-checkpoint", "bad-write", "bad-metadata"):
            run_turn(agent, t, t)
        with plain_client(langgraph_redis_url) as client:
            cp_key = sorted(client.scan_iter("checkpoint:bad-checkpoint:*"))[-1]
            client.execute_command("JSON.SET", cp_key, "$.checkpoint", '"not a checkpoint"')
            w_key = sorted(client.scan_iter("checkpoint_write:bad-write:*"))[0]
            client.execute_command("JSON.SET", w_key, "$.type", '"json"')
            client.execute_command("JSON.SET", w_key, "$.blob", '"bm90IGpzb24="')  # "not json"
            md_key = sorted(client.scan_iter("checkpoint:bad-metadata:*"))[0]
            client.execute_command("JSON.SET", md_key, "$.metadata", '"{oops"')
        items = {t: list(native_for(source).read_thread(t)) for t in ("bad-checkpoint", "bad-write", "bad-metadata")}
        for t, read in items.items():
            bad = [i for i in read if isinstance(i, Unreadable)]
            assert len(bad) == 1 and len(read) > 1, t
            assert "not a checkpoint" not in bad[0].error and "oops" not in bad[0].error
        result = backfill(source, target, state_path=":memory:")
        assert (result.unreadable, result.failed) == (3, 3)
        report = check(source, target)
        unreadable = {(d.thread_id, d.checkpoint_id) for d in report.divergences if d.kind == "unreadable"}
        assert {t for t, _ in unreadable} == {"bad-checkpoint", "bad-write", "bad-metadata"} and len(unreadable) == 3
        assert not [d for d in report.divergences if d.thread_id == "good"]
        assert native_for(target).checkpoint_keys("good") == native_for(source).checkpoint_keys("good")


# ----------------------------------------------------------------------------- wait, status


@pytest.mark.parametrize("scheme", ["redis", "redis+langgraph"])
def test_wait_refuses_a_write_no_replica_holds(redis_stack: EmbeddedRedisStack, scheme: str) -> None:
    """A server with no replica cannot acknowledge wait=1: the put raises, not returns."""
    redis_stack.flushall()
    with open_saver(redis_stack.url_for(scheme) + "?wait=1&wait_timeout=0.05") as saver:
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            saver.put(*_put_args("t"))
    with pytest.raises(StoreURLError, match="not a cluster"):
        parse_redis_url("redis+cluster://a:1,b:2?wait=1")
    target = parse_redis_url("redis+sentinel://:pw@a,b:26380/svc?prefix=p")
    assert (target.sentinel, target.hosts, target.db, target.saver) == ("svc", [("a", 26379), ("b", 26380)], 0, {"prefix": "p"})


def test_status_probes_the_new_stores(redis_stack: EmbeddedRedisStack, redis_url: str) -> None:
    from dualsaver.cli.status import probe_store

    redis_stack.flushall()
    probe = probe_store(redis_stack.langgraph_url)
    assert probe["reachable"] and probe["kind"] == "langgraph-redis" and redis_stack.password not in str(probe)
    assert "RediSearch" in probe["detail"]
    missing = probe_store(redis_url.replace("redis://", "redis+langgraph://"))  # no modules there
    assert missing["reachable"] is False and "ReJSON" in missing["detail"]
    assert probe_store("python:tests.factory_savers:official")["reachable"] is True
    assert probe_store("python:tests.factory_savers:nothing")["reachable"] is False
