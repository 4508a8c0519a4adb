"""The Redis checkpointer beyond the conformance suite: write order, filters, TTL, atomicity,
URLs, native access, prune/copy details, real graphs. Real servers from conftest only;
InMemorySaver is the oracle wherever the two must agree."""

from __future__ import annotations

import operator
import threading
import time
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT
from langgraph.graph import END, START, StateGraph

from dualsaver.stores import native_for
from dualsaver.stores.native import StoredCheckpoint, StoredWrite, Unreadable
from dualsaver.redis import RedisSaver, aopen_redis_saver, open_redis_saver
from dualsaver.redis.url import parse_redis_url, redact
from tests import graphs

FIXTURE_OF = {"standalone": "redis_url", "cluster": "redis_cluster_url"}
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(params=["standalone", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(FIXTURE_OF[request.param])


@pytest.fixture
def saver(url: str):
    with open_redis_saver(url) as s:
        yield s


def _checkpoint(values: dict[str, Any] | None = None, versions: dict[str, Any] | None = None) -> dict:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values or {})
    cp["channel_versions"] = dict(versions or dict.fromkeys(cp["channel_values"], 1))
    return cp


def _cfg(thread: str, ns: str = "", checkpoint_id: str | None = None) -> dict:
    conf = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _chain(savers: list[Any], thread: str, ns: str, metadatas: list[dict]) -> list[str]:
    """Put one parent chain of checkpoints in every saver; return the ids, oldest first."""
    ids, parent = [], None
    for md in metadatas:
        cp = _checkpoint({"x": len(ids)}, {"x": len(ids) + 1})
        for s in savers:
            s.put(_cfg(thread, ns, parent), cp, md, {"x": len(ids) + 1})
        parent = cp["id"]
        ids.append(cp["id"])
    return ids


# -- pending writes ---------------------------------------------------------------------

write_calls = st.lists(
    st.tuples(
        st.sampled_from(["t1", "t2", "t3"]),  # task_id
        st.sampled_from(["", "~a", "~a:b", "~b"]),  # task_path
        st.lists(st.tuples(st.sampled_from(["x", "y", ERROR, INTERRUPT]), st.integers(0, 9)), max_size=4),
    ),
    max_size=8,
)


@HYPOTHESIS
@given(calls=write_calls)
def test_pending_writes_match_inmemory(saver: RedisSaver, calls: list) -> None:
    """Order (task_path, task_id, idx), insert-if-absent for regular writes, overwrite for
    special ones: whatever sequence of put_writes, Redis returns what InMemorySaver does."""
    memory, thread = InMemorySaver(), str(uuid.uuid4())
    cp = _checkpoint()
    for s in (saver, memory):
        stored = s.put(_cfg(thread), cp, {"step": 0}, {})
        for task_id, task_path, writes in calls:
            s.put_writes(stored, writes, task_id, task_path)
    assert saver.get_tuple(_cfg(thread)).pending_writes == memory.get_tuple(_cfg(thread)).pending_writes


def test_task_path_and_idx_survive_natively(saver: RedisSaver) -> None:
    stored = saver.put(_cfg("t"), _checkpoint(), {}, {})
    saver.put_writes(stored, [("x", 1), ("y", 2)], "task-b", "~1")
    saver.put_writes(stored, [("x", 3)], "task-a", "~2")
    saver.put_writes(stored, [(ERROR, "boom")], "task-a", "~2")
    [item] = native_for(saver).read_thread("t")
    assert [(w.task_path, w.task_id, w.idx, w.channel, w.value) for w in item.writes] == [
        ("~1", "task-b", 0, "x", 1),
        ("~1", "task-b", 1, "y", 2),
        ("~2", "task-a", -1, ERROR, "boom"),
        ("~2", "task-a", 0, "x", 3),
    ]


# -- list -------------------------------------------------------------------------------


@pytest.fixture
def listed(saver: RedisSaver):
    """Two namespaces of one thread (plus a noise thread) in Redis and in memory."""
    memory = InMemorySaver()
    metadatas = [{"source": "input" if i % 2 else "loop", "step": i % 3, "score": i} for i in range(6)]
    ids = {ns: _chain([saver, memory], "thread", ns, metadatas) for ns in ("", "child:1")}
    _chain([saver, memory], "other", "", metadatas[:2])
    return saver, memory, ids


@HYPOTHESIS
@given(
    ns=st.sampled_from([None, "", "child:1"]),
    filter=st.sampled_from([None, {}, {"source": "input"}, {"step": 1}, {"source": "loop", "step": 2}, {"score": 99}]),
    before=st.one_of(st.none(), st.integers(0, 5)),
    limit=st.one_of(st.none(), st.integers(0, 7)),
)
def test_list_matches_inmemory(listed: Any, ns: str | None, filter: Any, before: int | None, limit: int | None) -> None:
    saver, memory, ids = listed
    config = {"configurable": {"thread_id": "thread"} | ({} if ns is None else {"checkpoint_ns": ns})}
    before_cfg = _cfg("thread", ns or "", ids[ns or ""][before]) if before is not None else None
    got = [t.checkpoint["id"] for t in saver.list(config, filter=filter, before=before_cfg, limit=limit)]
    every = [t.checkpoint["id"] for t in memory.list(config, filter=filter, before=before_cfg)]
    # Newest first; across namespaces too (InMemorySaver goes namespace by namespace).
    assert got == sorted(every, reverse=True)[:limit]


def test_list_without_config_walks_every_thread(listed: Any) -> None:
    saver, _, _ = listed
    found = [(t.config["configurable"]["thread_id"], t.checkpoint["id"]) for t in saver.list(None)]
    assert len(found) == 14
    assert [t for t, _ in found] == sorted(t for t, _ in found)  # thread by thread, ascending
    assert len(list(saver.list(None, limit=3))) == 3
    assert len(list(saver.list(None, filter={"score": 1}))) == 3


# -- storage layout ---------------------------------------------------------------------


def test_unchanged_channels_are_not_rewritten(saver: RedisSaver) -> None:
    first = _checkpoint({"a": "A1", "b": "B1"}, {"a": 1, "b": 1})
    stored = saver.put(_cfg("t"), first, {}, {"a": 1, "b": 1})
    second = _checkpoint({"a": "A2", "b": "B1"}, {"a": 2, "b": 1})
    saver.put(stored, second, {}, {"a": 2})
    assert saver.client.hlen(saver._keys("t")[2]) == 3  # a@1, b@1, a@2
    assert saver.get_tuple(_cfg("t")).checkpoint["channel_values"] == {"a": "A2", "b": "B1"}
    assert saver.get_tuple(stored).checkpoint["channel_values"] == {"a": "A1", "b": "B1"}


def test_thread_keys_share_one_slot(redis_cluster_url: str) -> None:
    with open_redis_saver(redis_cluster_url) as saver:
        for thread in ["plain", "a{b}c", "}{", "100%", "ü/ß"]:
            saver.put(_cfg(thread), _checkpoint({"v": 1}), {}, {"v": 1})
            slots = {saver.client.keyslot(k) for k in saver._keys(thread)}
            assert len(slots) == 1, thread
            assert saver.get_tuple(_cfg(thread)).checkpoint["channel_values"] == {"v": 1}
        assert sorted(native_for(saver).thread_ids()) == list(native_for(saver).thread_ids())


# -- TTL --------------------------------------------------------------------------------


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ttl_expires_idle_threads_and_spares_active_ones(url: str) -> None:
    ttl = 0.6
    with open_redis_saver(url + ("&" if "?" in url else "?") + f"ttl={ttl}") as saver:
        idle = saver.put(_cfg("idle"), _checkpoint({"v": 1}), {}, {"v": 1})
        active = saver.put(_cfg("active"), _checkpoint({"v": 1}), {}, {"v": 1})
        saver.put_writes(idle, [("x", 1)], "task")
        assert all(saver.client.pttl(k) > 0 for k in saver._keys("idle"))
        began = time.monotonic()
        while time.monotonic() - began < 3 * ttl:  # keep one conversation going
            saver.put_writes(active, [("x", 1)], str(uuid.uuid4()))
            time.sleep(ttl / 4)
        _wait_for(lambda: saver.get_tuple(_cfg("idle")) is None)
        assert saver.get_tuple(_cfg("active")) is not None
        assert list(native_for(saver).thread_ids()) == ["active"]
        # The sweep dropped the expired thread from the index, and only it.
        index = saver._index_keys[0]
        assert saver.client.zrange(index, 0, -1) == [b"active"]


# -- atomicity --------------------------------------------------------------------------


def test_readers_never_see_half_a_checkpoint(saver: RedisSaver) -> None:
    """Every put changes all channels; a reader must never see a mix or a missing value."""
    channels = [f"c{i}" for i in range(8)]
    stop, seen, errors = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            tup = saver.get_tuple(_cfg("t"))
            if tup is not None:
                values = tup.checkpoint["channel_values"]
                seen.append(values.get("c0"))
                if sorted(values) != channels or len(set(values.values())) != 1:
                    errors.append(values)

    reader = threading.Thread(target=read)
    reader.start()
    stored = _cfg("t")
    try:
        for step in range(150):
            versions = dict.fromkeys(channels, step + 1)
            stored = saver.put(stored, _checkpoint(dict.fromkeys(channels, step), versions), {}, versions)
    finally:
        stop.set()
        reader.join()
    assert not errors and len(set(seen)) > 1


# -- URLs -------------------------------------------------------------------------------


def test_url_forms() -> None:
    t = parse_redis_url("redis://:s3cret@db.example:6380/2?prefix=app&ttl=3600&pool_size=20")
    assert (t.tls, t.cluster, t.hosts, t.db, t.password) == (False, False, [("db.example", 6380)], 2, "s3cret")
    assert t.saver == {"prefix": "app", "ttl": 3600.0} and t.pool_size == 20
    t = parse_redis_url("rediss://user:p%40ss@h", socket_timeout="2.5")
    assert (t.tls, t.username, t.password, t.hosts, t.client) == (True, "user", "p@ss", [("h", 6379)], {"socket_timeout": 2.5})
    t = parse_redis_url("rediss+cluster://:pw@a:7000,b:7001,[::1]:7002/?prefix=x", prefix="y")
    assert (t.tls, t.cluster, t.hosts, t.saver) == (True, True, [("a", 7000), ("b", 7001), ("::1", 7002)], {"prefix": "y"})


@pytest.mark.parametrize(
    "url",
    [
        "http://:topsecret@h:1",
        "redis://:topsecret@h:port",
        "redis://:topsecret@a:1,b:2",
        "redis+cluster://:topsecret@a:1/3",
        "redis://:topsecret@h:1/x",
        "redis://:topsecret@h:1?colour=red",
        "redis://:topsecret@h:1?ttl=soon",
        "redis://:topsecret@h:1?pool_size=0",
        "redis://:topsecret@",
    ],
)
def test_bad_urls_raise_one_line_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_redis_url(url)
    assert "topsecret" not in str(err.value) and "\n" not in str(err.value)
    assert "topsecret" not in redact(url)


def test_unreachable_or_refused_server_raises_connection_error(redis_url: str) -> None:
    host_port = redis_url.split("@")[-1].split("/")[0]
    for bad in (f"redis://:wr0ngpass@{host_port}/0", "redis://:wr0ngpass@127.0.0.1:1/0"):
        with pytest.raises(ConnectionError) as err, open_redis_saver(bad, socket_connect_timeout=2):
            pass
        assert "wr0ngpass" not in str(err.value) and "\n" not in str(err.value)
        assert err.value.__cause__ is None and err.value.__suppress_context__


def test_url_options_reach_the_saver(redis_url: str) -> None:
    with open_redis_saver(redis_url + "?prefix=tenant&ttl=30&pool_size=3") as saver:
        assert (saver.prefix, saver.ttl) == ("tenant", 30.0)
        assert saver.client.connection_pool.max_connections == 3
        saver.put(_cfg("t"), _checkpoint(), {}, {})
        assert all(k.startswith(b"{tenant") for k in saver.client.scan_iter())


# -- native access ----------------------------------------------------------------------

ODD_IDS = ["b", "a", "a{x}", "}", "%7D", "zeta", "Ä", "a b"]


def test_thread_ids_ascending_without_keys(saver: RedisSaver) -> None:
    for thread in ODD_IDS:
        saver.put(_cfg(thread), _checkpoint(), {}, {})
    saver.delete_thread("zeta")
    nodes = saver.client.get_primaries() if saver.cluster else [None]
    for node in nodes:
        saver.client.config_resetstat(**({"target_nodes": node} if node else {}))
    assert list(native_for(saver).thread_ids()) == sorted(set(ODD_IDS) - {"zeta"})
    for node in nodes:
        stats = saver.client.info("commandstats", **({"target_nodes": node} if node else {}))
        assert "cmdstat_keys" not in stats and "cmdstat_scan" not in stats


def _stored(thread: str, ns: str, cid: str, parent: str | None, writes: tuple = ()) -> StoredCheckpoint:
    cp = _checkpoint({"msg": f"{thread}/{ns}/{cid}"}, {"msg": "00000000000000000000000000000001.5"})
    cp["id"] = cid
    return StoredCheckpoint(thread, ns, cid, parent, cp, {"source": "loop", "step": 1}, writes)


def test_native_write_is_insert_if_absent_and_read_is_ordered(saver: RedisSaver) -> None:
    native = native_for(saver)
    w = (StoredWrite("task", "~1", 0, "x", 1), StoredWrite("task", "~1", -1, ERROR, "e"))
    items = [_stored("t", "child", "2", None), _stored("t", "", "2", "1", w), _stored("t", "", "1", None)]
    assert native.write_checkpoints(items) == (3, 2)
    # A second copy adds nothing and overwrites nothing (live traffic may own these rows).
    changed = [_stored("t", "", "2", "1", (StoredWrite("task", "~1", -1, ERROR, "other"),))]
    assert native.write_checkpoints(changed + items) == (0, 0)
    read = list(native.read_thread("t"))
    assert [(i.checkpoint_ns, i.checkpoint_id) for i in read] == [("", "1"), ("", "2"), ("child", "2")]
    assert [(x.task_path, x.idx, x.value) for x in read[1].writes] == [("~1", -1, "e"), ("~1", 0, 1)]
    assert read[1].checkpoint["channel_values"] == {"msg": "t//2"} and read[1].parent_checkpoint_id == "1"
    assert native.checkpoint_keys("t") == {("", "1"), ("", "2"), ("child", "2")}
    assert saver.get_tuple(_cfg("t", "", "2")).pending_writes == [("task", ERROR, "e"), ("task", "x", 1)]


def test_native_copy_between_prefixes_is_exact(url: str) -> None:
    with open_redis_saver(url, prefix="old") as old, open_redis_saver(url, prefix="new") as new:
        app = graphs.build_agent(old)
        graphs.run_turn(app, "conv", "alpha")
        for thread in native_for(old).thread_ids():
            native_for(new).write_checkpoints(native_for(old).read_thread(thread))
        source = list(native_for(old).read_thread("conv"))
        assert list(native_for(new).read_thread("conv")) == source
        assert {i.checkpoint_ns for i in source} != {""}  # the subgraph namespace came too
        resumed = graphs.build_agent(new)
        assert graphs.run_turn(resumed, "conv", "beta")["results"] == graphs.expected_results("alpha", "beta")


def test_undecodable_rows_are_reported_not_raised(saver: RedisSaver) -> None:
    saver.put(_cfg("t"), _checkpoint({"v": 1}), {}, {"v": 1})
    bad = _checkpoint({"v": 2}, {"v": 2})
    saver.put(_cfg("t"), bad, {}, {"v": 2})
    field = f"\0{bad['id']}".encode()
    record = saver.client.hget(saver._keys("t")[1], field)
    saver.client.hset(saver._keys("t")[1], field, record.replace(b"msgpack", b"nonsense"))
    items = list(native_for(saver).read_thread("t"))
    assert [type(i) for i in items] == [StoredCheckpoint, Unreadable]
    assert items[1].checkpoint_id == bad["id"] and "nonsense" not in items[1].error


# -- prune, copy, delete ----------------------------------------------------------------


def test_prune_keep_latest_collects_blobs_and_clears_the_parent(saver: RedisSaver) -> None:
    stored = _cfg("t")
    for step in range(4):
        versions = {"a": step + 1, "keep": 1}
        stored = saver.put(stored, _checkpoint({"a": step, "keep": "k"}, versions), {"step": step}, versions)
        saver.put_writes(stored, [("a", step)], f"task{step}")
    saver.prune(["t"])
    [tup] = list(saver.list(_cfg("t")))
    assert tup.checkpoint["channel_values"] == {"a": 3, "keep": "k"} and tup.parent_config is None
    assert tup.pending_writes == [("task3", "a", 3)]
    assert saver.client.hlen(saver._keys("t")[2]) == 2  # a@4 and keep@1: the rest was garbage


def test_prune_refuses_delta_threads(saver: RedisSaver) -> None:
    saver.put(_cfg("plain"), _checkpoint(), {"step": 1}, {})
    saver.put(_cfg("delta"), _checkpoint(), {"counters_since_delta_snapshot": {"m": [1, 1]}}, {})
    with pytest.raises(NotImplementedError, match="delta"):
        saver.prune(["plain", "delta"])
    assert saver.get_tuple(_cfg("delta")) is not None
    with pytest.raises(TypeError):
        saver.prune("plain")
    with pytest.raises(ValueError):
        saver.prune(["plain"], strategy="newest")


def test_copy_thread_never_overwrites_the_target(saver: RedisSaver) -> None:
    cp = _checkpoint({"v": "source"}, {"v": 1})
    saver.put(_cfg("src"), cp, {"who": "src"}, {"v": 1})
    saver.put(_cfg("dst"), cp, {"who": "dst"}, {})
    saver.copy_thread("src", "dst")
    assert saver.get_tuple(_cfg("dst")).metadata["who"] == "dst"


def test_delete_for_runs_keeps_blobs_still_referenced(saver: RedisSaver) -> None:
    first = saver.put(_cfg("t"), _checkpoint({"a": 1, "b": 1}, {"a": 1, "b": 1}), {"run_id": "r1"}, {"a": 1, "b": 1})
    saver.put(first, _checkpoint({"a": 2, "b": 1}, {"a": 2, "b": 1}), {"run_id": "r2"}, {"a": 2})
    saver.delete_for_runs(["r1"])
    [tup] = list(saver.list(_cfg("t")))
    assert tup.checkpoint["channel_values"] == {"a": 2, "b": 1}
    assert saver.client.hlen(saver._keys("t")[2]) == 2


# -- real graphs ------------------------------------------------------------------------


def test_real_graph_two_turns_like_inmemory(saver: RedisSaver) -> None:
    memory = InMemorySaver()
    results = {}
    for s in (saver, memory):
        app = graphs.build_agent(s)
        graphs.run_turn(app, "conv", "alpha")
        results[s] = (graphs.run_turn(app, "conv", "beta"), len(list(app.get_state_history(graphs.config("conv")))))
    assert results[saver] == results[memory]
    assert results[saver][0]["results"] == graphs.expected_results("alpha", "beta")


async def test_real_graph_async(url: str) -> None:
    async with aopen_redis_saver(url) as saver:
        app = graphs.build_agent(saver)
        await graphs.arun_turn(app, "conv", "alpha")
        final = await graphs.arun_turn(app, "conv", "beta")
        assert final["results"] == graphs.expected_results("alpha", "beta")


def _concat(state: list | None, writes: list[list]) -> list:
    return list(state or []) + [x for w in writes for x in w]


class DeltaState(TypedDict, total=False):
    items: Annotated[list, DeltaChannel(_concat, snapshot_frequency=3)]
    log: Annotated[list, operator.add]


def _delta_graph(checkpointer: Any) -> Any:
    g = StateGraph(DeltaState)
    g.add_node("a", lambda s: {"items": [f"a{len(s.get('items', []))}"], "log": ["a"]})
    g.add_node("b", lambda s: {"items": ["b"]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", END)
    return g.compile(checkpointer=checkpointer)


def test_delta_channel_graph_like_inmemory(saver: RedisSaver) -> None:
    """DeltaChannel state is rebuilt through get_delta_channel_history."""
    memory, cfg = InMemorySaver(), graphs.config("delta")
    for s in (saver, memory):
        app = _delta_graph(s)
        for _ in range(5):
            app.invoke({"items": ["in"]}, cfg)
    assert _delta_graph(saver).get_state(cfg).values == _delta_graph(memory).get_state(cfg).values

    def values(s: Any) -> dict:
        history = s.get_delta_channel_history(config=s.get_tuple(cfg).config, channels=["items", "log"])
        return {ch: ([w[2] for w in h["writes"]], h.get("seed")) for ch, h in history.items()}

    assert values(saver) == values(memory)
