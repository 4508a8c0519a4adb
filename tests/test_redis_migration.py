"""Migrations into and out of Redis are exact: SQLite -> Redis (standalone and cluster),
Redis -> PostgreSQL, and DualSaver walking every phase over those pairs.

Exactness is judged three ways, each compared between the two stores:

- raw: an independent snapshot read with plain redis-py / sqlite3 / psycopg and decoded from
  the documented layouts (the Redis one by this file's own framing decoder, not dualsaver's);
- native: what each store's `NativeStore` adapter reads (what backfill and check rely on);
- public: `list` and `get_tuple` of each saver (what an application sees).

The history comes from real graphs: tests/graphs.py's agent (subgraph, parallel Send
branches, an interrupt), backfill_support's graph (adds a DeltaChannel) and the demo's
support agent (messages). Some threads are left waiting at their interrupt.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities
from langgraph.types import Command

from dualsaver import DualSaver, Phase
from dualsaver.migrate import abackfill, backfill
from dualsaver.checker import acheck, check
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.stores import StoredCheckpoint, aopen_saver, native_for, open_saver
from dualsaver.redis import aopen_redis_saver
from tests.backfill_support import build_graph, normalize, run_threads, snapshot_postgres, snapshot_sqlite
from tests.graphs import build_agent, config, expected_results, run_turn
from tests.savers import async_saver, truncate_postgres

Key = tuple[str, str, str]
PREFIX = "dualsaver"  # open_saver's default key prefix

AGENT_THREADS = ["agent-0", "agent-1", "odd{id}%7B"]  # braces and % exercise key escaping
DELTA_THREADS = ["delta-0", "delta-1"]
SUPPORT_THREADS = ["support-0"]
ALL_THREADS = sorted(AGENT_THREADS + DELTA_THREADS + SUPPORT_THREADS)
WAITING = "agent-waiting"  # stopped at its interrupt before the copy


# ----------------------------------------------------------------------------- history


def make_history(saver: Any) -> list[str]:
    """Real graphs on `saver`; returns every thread id written (ascending)."""
    agent = build_agent(saver)
    run_turn(agent, "agent-0", "alpha")
    run_turn(agent, "agent-0", "beta", approve=False)
    run_turn(agent, "agent-1", "gamma")
    run_turn(agent, "odd{id}%7B", "odd")
    agent.invoke({"topic": "wait"}, config(WAITING))  # the pending interrupt must survive
    run_threads(saver, DELTA_THREADS, turns=2)  # delta-0 is left interrupted too
    support = build_support_agent(saver)
    for question in QUESTIONS[:2]:
        say(support, "support-0", question)
    return sorted([*ALL_THREADS, WAITING])


def graph_views(saver: Any) -> dict[str, Any]:
    """What an application sees of every thread: state (subgraphs too), next, interrupts, history."""
    graphs = {t: build_agent(saver) for t in [*AGENT_THREADS, WAITING]}
    graphs |= {t: build_graph(saver) for t in DELTA_THREADS}
    graphs |= {t: build_support_agent(saver) for t in SUPPORT_THREADS}
    views = {}
    for thread_id, graph in graphs.items():
        cfg = config(thread_id)
        snap = graph.get_state(cfg, subgraphs=True)
        history = [
            (h.values, h.next, h.metadata, h.parent_config, [(x.name, x.interrupts) for x in h.tasks])
            for h in graph.get_state_history(cfg)
        ]
        views[thread_id] = (snap.values, snap.next, [x.interrupts for x in snap.tasks], history)
    return views


# ----------------------------------------------------------------------------- Redis, raw
# Layout (documented in dualsaver/stores/redis_base.py and redis_codec.py), decoded here
# with a framing reader of our own so the snapshot can judge dualsaver's code.


def _unframe(data: bytes) -> list[bytes]:
    """``<length>:<bytes>`` back to back."""
    parts, pos = [], 0
    while pos < len(data):
        colon = data.index(b":", pos)
        start = colon + 1
        end = start + int(data[pos:colon])
        assert end <= len(data), "frame runs past the value"
        parts.append(data[start:end])
        pos = end
    return parts


def _typed(kind: bytes, data: bytes) -> tuple[str, bytes]:
    return kind.decode(), data


def _unescape(tag: str) -> str:
    return re.sub("%(7B|7D|25)", lambda m: {"7B": "{", "7D": "}", "25": "%"}[m.group(1)], tag)


def raw_redis_keys(node_urls: list[str], prefix: str = PREFIX) -> dict[str, dict[str, tuple[str, str]]]:
    """thread id -> {kind: (node URL, key)}, from SCAN on every node (not the store's index)."""
    found: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for url in node_urls:
        with redis.Redis.from_url(url) as node:
            for raw in node.scan_iter(match=f"{{{prefix}:*", count=500):
                key = raw.decode()
                tag, _, kind = key.rpartition(":")
                assert tag.startswith("{") and tag.endswith("}"), key
                thread_id = _unescape(tag[len(prefix) + 2 : -1])
                assert kind not in found[thread_id], f"{key} on two nodes"
                found[thread_id][kind] = (url, key)
    return dict(found)


def snapshot_redis(node_urls: list[str], serde: Any, prefix: str = PREFIX) -> dict[Key, tuple]:
    """key -> (checkpoint, metadata, parent, writes) as the Redis store holds it, writes as
    [(task_id, task_path, idx, channel, value)] in (task_path, task_id, idx) order."""
    out: dict[Key, tuple] = {}
    clients = {url: redis.Redis.from_url(url) for url in node_urls}
    try:
        for thread_id, keys in raw_redis_keys(node_urls, prefix).items():
            assert set(keys) <= {"ids", "cp", "bl", "w"}, keys
            nodes = {url for url, _ in keys.values()}
            assert len(nodes) == 1, f"thread {thread_id!r} spread over {nodes}"
            node = clients[nodes.pop()]

            def read(kind: str, how: str) -> Any:
                if kind not in keys:
                    return [] if how == "zrange" else {}
                key = keys[kind][1]
                return node.zrange(key, 0, -1) if how == "zrange" else node.hgetall(key)

            members = read("ids", "zrange")
            records, blobs, writes = read("cp", "hash"), read("bl", "hash"), read("w", "hash")
            assert set(records) == set(members), "index and records disagree"
            assert set(writes) <= set(members), "writes for a checkpoint that is not there"
            for m in members:
                ns, _, checkpoint_id = m.decode().partition("\0")
                parts = _unframe(records[m])
                parent, nrefs = parts[0].decode() or None, int(parts[3])
                refs = [tuple(r.decode().split("\0", 1)) for r in parts[4 : 4 + nrefs]]
                ctype, cbytes, mtype, mbytes = parts[4 + nrefs :]
                checkpoint = serde.loads_typed(_typed(ctype, cbytes))
                versions = checkpoint["channel_versions"]
                assert refs == [(c, str(v)) for c, v in versions.items()]
                values = {}
                for channel, version in versions.items():
                    blob = blobs.get(f"{ns}\0{channel}\0{version}".encode())
                    if blob is not None:
                        kind, _, data = blob.partition(b"\0")
                        if kind != b"empty":
                            values[channel] = serde.loads_typed(_typed(kind, data))
                entries = []
                for body in _unframe(writes.get(m, b"")):
                    task_id, idx, task_path, channel, kind, data = _unframe(body)
                    entries.append((task_id.decode(), task_path.decode(), int(idx), channel.decode(),
                                    serde.loads_typed(_typed(kind, data))))
                entries.sort(key=lambda w: (w[1], w[0], w[2]))
                out[(thread_id, ns, checkpoint_id)] = (
                    {**checkpoint, "channel_values": values},
                    serde.loads_typed(_typed(mtype, mbytes)),
                    parent,
                    entries,
                )
    finally:
        for client in clients.values():
            client.close()
    return out


# ----------------------------------------------------------------------------- views via dualsaver


def native_view(saver: Any) -> dict[Key, tuple]:
    store = native_for(saver)
    out: dict[Key, tuple] = {}
    for thread_id in store.thread_ids():
        for item in store.read_thread(thread_id):
            assert isinstance(item, StoredCheckpoint), item
            writes = [(w.task_id, w.task_path, w.idx, w.channel, w.value) for w in item.writes]
            out[item.key] = (item.checkpoint, item.metadata, item.parent_checkpoint_id, writes)
    return out


def public_view(saver: Any) -> dict[Key, tuple]:
    """Every tuple of every thread through list(), each confirmed by get_tuple()."""
    thread_ids = sorted({t.config["configurable"]["thread_id"] for t in saver.list(None)})
    out: dict[Key, tuple] = {}
    for thread_id in thread_ids:
        for tup in list(saver.list(config(thread_id))):  # SqliteSaver locks while listing
            conf = tup.config["configurable"]
            parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            view = (tup.checkpoint, tup.metadata, parent, list(tup.pending_writes))
            again = saver.get_tuple(tup.config)
            assert again is not None and again.parent_config == tup.parent_config
            assert (again.checkpoint, again.metadata, list(again.pending_writes)) == view[:2] + view[3:]
            out[(thread_id, conf["checkpoint_ns"], conf["checkpoint_id"])] = view
    return out


def assert_same_everywhere(old: Any, new: Any, raw_old: dict, raw_new: dict) -> None:
    source = normalize(raw_old)
    assert normalize(raw_new) == source
    assert any(ns for (_, ns, _) in source), "no subgraph namespace in the history"
    channels = {w[3] for (*_, ws) in source.values() for w in ws}
    assert {"__interrupt__", "__resume__", "results", "delta", "messages"} <= channels
    old_native, new_native = normalize(native_view(old)), normalize(native_view(new))
    assert old_native == source  # each adapter reads what its store holds ...
    assert new_native == normalize(raw_new)  # ... and the two agree
    assert normalize(public_view(new)) == normalize(public_view(old))
    assert graph_views(new) == graph_views(old)


def assert_resumes_on(saver: Any) -> None:
    """The interrupted thread goes on where it stopped, on the store it was copied to."""
    final = build_agent(saver).invoke(Command(resume=True), config(WAITING))
    assert final["results"] == expected_results("wait") and final["approved"] is True


# ----------------------------------------------------------------------------- SQLite -> Redis


@pytest.fixture(params=["standalone", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(store URL, URLs of every node holding data)."""
    if request.param == "standalone":
        url = request.getfixturevalue("redis_url")
        return url, [url]
    url = request.getfixturevalue("redis_cluster_url")
    return url, request.getfixturevalue("redis_cluster").urls


def test_sqlite_to_redis_is_exact_and_a_rerun_adds_nothing(
    sqlite_path: Path, tmp_path: Path, redis_target: tuple[str, list[str]]
) -> None:
    url, nodes = redis_target
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(url) as new:
        threads = make_history(old)
        raw_old = snapshot_sqlite(str(sqlite_path), old.serde)
        result = backfill(old, new, state_path=tmp_path / "progress.sqlite", workers=2)
        assert result.exact and (result.failed, result.unreadable) == (0, 0)
        assert (result.threads, result.checkpoints) == (len(threads), len(raw_old))
        assert result.writes == sum(len(w) for (*_, w) in raw_old.values())

        raw_new = snapshot_redis(nodes, new.serde)
        assert sorted({t for (t, _, _) in raw_new}) == threads
        assert_same_everywhere(old, new, raw_old, raw_new)
        assert check(old, new).clean

        again = backfill(old, new, state_path=tmp_path / "progress.sqlite", resume=False)
        assert (again.checkpoints, again.writes, again.skipped, again.failed) == (0, 0, len(raw_old), 0)
        assert snapshot_redis(nodes, new.serde) == raw_new  # byte-for-byte nothing new
        assert_resumes_on(new)


def _frame(parts: list[bytes]) -> bytes:
    return b"".join(b"%d:%s" % (len(p), p) for p in parts)


def test_the_judges_can_fail(sqlite_path: Path, tmp_path: Path, redis_url: str) -> None:
    """Swap the idx of two writes of one task in Redis: the snapshot and check() both see it."""
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(redis_url) as new:
        make_history(old)
        backfill(old, new, state_path=tmp_path / "progress.sqlite")
        source = normalize(snapshot_sqlite(str(sqlite_path), old.serde))
        assert normalize(snapshot_redis([redis_url], new.serde)) == source
        key = next(k for k, v in source.items() if len({w[0] for w in v[3]}) < len(v[3]))
        (_, hash_key), = [raw_redis_keys([redis_url])[key[0]]["w"]]
        with redis.Redis.from_url(redis_url) as r:
            field = f"{key[1]}\0{key[2]}".encode()
            entries = [_unframe(e) for e in _unframe(r.hget(hash_key, field))]
            task = next(e[0] for e in entries if sum(x[0] == e[0] for x in entries) > 1)
            mine = [e for e in entries if e[0] == task]
            mine[0][1], mine[1][1] = mine[1][1], mine[0][1]  # same writes, order swapped
            r.hset(hash_key, field, _frame([_frame(e) for e in entries]))
        assert normalize(snapshot_redis([redis_url], new.serde)) != source
        report = check(old, new, backoff=(0,))
        assert {(d.kind, d.thread_id) for d in report.divergences} == {("writes_mismatch", key[0])}


async def test_async_sqlite_to_redis_cluster(tmp_path: Path, redis_cluster_url: str, redis_cluster: Any) -> None:
    """The async backfill and check over AsyncRedisSaver make the same exact copy."""
    path = tmp_path / "old.sqlite"
    with open_saver(f"sqlite:///{path}") as old_sync:
        make_history(old_sync)
        raw_old = snapshot_sqlite(str(path), old_sync.serde)
    async with aopen_saver(f"sqlite:///{path}") as old, aopen_saver(redis_cluster_url) as new:
        result = await abackfill(old, new, state_path=tmp_path / "progress.sqlite", workers=3)
        assert result.exact and result.failed == 0 and result.checkpoints == len(raw_old)
        assert (await acheck(old, new)).clean
        again = await abackfill(old, new, state_path=tmp_path / "progress.sqlite", resume=False)
        assert (again.checkpoints, again.writes) == (0, 0)
        assert normalize(snapshot_redis(redis_cluster.urls, new.serde)) == normalize(raw_old)


# ----------------------------------------------------------------------------- Redis -> PostgreSQL


def test_redis_to_postgres_is_exact_and_a_rerun_adds_nothing(
    redis_url: str, pg_url: str, tmp_path: Path
) -> None:
    with open_saver(redis_url) as old, open_saver(pg_url) as new:
        threads = make_history(old)
        raw_old = snapshot_redis([redis_url], old.serde)
        assert sorted({t for (t, _, _) in raw_old}) == threads
        result = backfill(old, new, state_path=tmp_path / "progress.sqlite", workers=2)
        assert result.exact and (result.failed, result.unreadable) == (0, 0)
        assert (result.threads, result.checkpoints) == (len(threads), len(raw_old))
        assert result.writes == sum(len(w) for (*_, w) in raw_old.values())

        raw_new = snapshot_postgres(pg_url, new.serde)
        assert_same_everywhere(old, new, raw_old, raw_new)
        assert check(old, new).clean

        again = backfill(old, new, state_path=tmp_path / "progress.sqlite", resume=False)
        assert (again.checkpoints, again.writes, again.skipped, again.failed) == (0, 0, len(raw_old), 0)
        assert normalize(snapshot_postgres(pg_url, new.serde)) == normalize(raw_new)
        assert_resumes_on(new)


# ----------------------------------------------------------------------------- DualSaver, all phases


def _count(saver: Any) -> int:
    return len(native_view(saver))


def walk_every_phase(old: Any, new: Any, tmp_path: Path) -> None:
    """A real graph on `old`, then DualSaver through shadow-write, backfill, read-switch and
    decommission; in each phase one thread stops at its interrupt and resumes after the next
    phase change, and a thread from before the migration resumes after read-switch."""
    before = build_agent(old)
    run_turn(before, "history", "h0")
    before.invoke({"topic": "old-wait"}, config("old-wait"))  # only old knows this interrupt
    topics = {"history": ["h0"]}

    saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "journal.sqlite")
    app = build_agent(saver)
    waiting: str | None = None
    for phase in Phase:
        saver.phase = phase
        if waiting is not None:  # interrupted in the previous phase, resumed in this one
            final = app.invoke(Command(resume=True), config(waiting))
            assert final["results"] == expected_results(waiting) and final["log"][-1] == "finish"
        if phase is Phase.BACKFILL:
            result = backfill(old, new, state_path=tmp_path / "progress.sqlite")
            assert result.exact and result.failed == 0 and result.checkpoints > 0
            assert check(old, new).clean  # the evidence read-switch wants
        if phase is Phase.READ_SWITCH:
            final = app.invoke(Command(resume=True), config("old-wait"))  # read from new now
            assert final["results"] == expected_results("old-wait")
            assert check(old, new, primary="new").clean  # old kept complete for a rollback
        if phase is Phase.DECOMMISSION:
            frozen = _count(old)
        topic = f"h-{phase.value}"
        final = run_turn(app, "history", topic)
        topics["history"].append(topic)
        assert final["results"] == expected_results(*topics["history"])
        waiting = f"w-{phase.value}"
        app.invoke({"topic": waiting}, config(waiting))
        assert app.get_state(config(waiting)).next == ("approve",)

    final = app.invoke(Command(resume=True), config(waiting))  # decommission's own interrupt
    assert final["results"] == expected_results(waiting)
    assert _count(old) == frozen  # decommission never touched old
    assert saver.secondary_failures.total() == 0
    # new alone serves everything: the whole history, the pre-migration thread included
    alone = build_agent(new)
    assert alone.get_state(config("history")).values["results"] == expected_results(*topics["history"])
    assert alone.get_state(config("old-wait")).values["approved"] is True
    assert set(native_view(old)) < set(native_view(new))  # every checkpoint old ever had, and more
    saver.close()


def test_dualsaver_sqlite_to_redis_every_phase(sqlite_path: Path, redis_url: str, tmp_path: Path) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(redis_url) as new:
        walk_every_phase(old, new, tmp_path)


def test_dualsaver_redis_to_postgres_every_phase(redis_url: str, pg_url: str, tmp_path: Path) -> None:
    with open_saver(redis_url) as old, open_saver(pg_url) as new:
        walk_every_phase(old, new, tmp_path)


async def test_redis_pairs_advertise_what_both_sides_can_do(
    tmp_path: Path, redis_url: str, redis_cluster_url: str
) -> None:
    """Judged like the conformance suite, by the async forms (so with AsyncRedisSaver)."""
    extended = {"delete_for_runs", "copy_thread", "prune"}
    async with (
        aopen_saver(redis_url) as a,
        aopen_saver(redis_cluster_url) as b,
        async_saver("sqlite", tmp=tmp_path) as lite,
    ):
        both = DetectedCapabilities.from_instance(DualSaver(a, b, journal=":memory:"))
        assert extended <= {c.value for c in both.detected}
        for phase in Phase:  # and they work: copy, prune, delete runs through the DualSaver
            saver = DualSaver(a, b, phase, journal=tmp_path / "journal.sqlite")
            app = build_agent(saver)
            run_id = str(uuid.uuid4())
            await app.ainvoke({"topic": "x"}, {**config(f"src-{phase}"), "metadata": {"run_id": run_id}})
            await saver.acopy_thread(f"src-{phase}", f"copy-{phase}")
            for side in (a, b):
                copied = await side.aget_tuple(config(f"copy-{phase}"))
                assert (copied is None) == (phase is Phase.DECOMMISSION and side is a)
            await saver.aprune([f"copy-{phase}"], strategy="keep_latest")
            kept = [t async for t in saver.alist(config(f"copy-{phase}"))]
            assert len(kept) == len({t.config["configurable"]["checkpoint_ns"] for t in kept})
            assert (await saver.aget_tuple(config(f"src-{phase}"))).metadata["run_id"] == run_id
            await saver.adelete_for_runs([run_id])
            for side in (a, b):  # gone from both (old never had it in decommission)
                assert await side.aget_tuple(config(f"src-{phase}")) is None
        # SQLite implements none of them: the pair offers them all the same, through the native
        # adapters (issue 18)
        mixed = DetectedCapabilities.from_instance(DualSaver(lite, a, journal=":memory:"))
        assert extended <= {c.value for c in mixed.detected}


# ----------------------------------------------------------------------------- conformance

BASE = {"put", "put_writes", "get_tuple", "list", "delete_thread"}
EXTENDED_BY_PAIR = {
    ("sqlite", "redis"): set(),  # AsyncSqliteSaver has none of them
    ("redis", "postgres"): {"prune"},  # AsyncPostgresSaver has prune only
    ("redis", "redis-cluster"): {"delete_for_runs", "copy_thread", "prune"},
}
PAIRS = list(EXTENDED_BY_PAIR)
_prefixes = iter(range(1, 10**9))


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(Phase), ids=str)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-to-{p[1]}")
async def test_conformance_over_redis_pairs_in_every_phase(request, tmp_path, pair, phase) -> None:
    fixtures = {"redis": "redis_url", "redis-cluster": "redis_cluster_url", "postgres": "pg_url"}
    urls = {kind: request.getfixturevalue(fixtures[kind]) if kind in pair else None for kind in fixtures}

    def side(kind: str) -> Any:
        if kind.startswith("redis"):  # a fresh prefix: a fresh, empty store on the same server
            return aopen_redis_saver(urls[kind], prefix=f"conf{next(_prefixes)}")
        return async_saver(kind, pg_url=urls["postgres"], tmp=tmp_path)

    @checkpointer_test(name=f"DualSaver[{pair[0]}->{pair[1]}, {phase}]")
    async def factory() -> AsyncIterator[Any]:
        if urls["postgres"]:
            await truncate_postgres(urls["postgres"])
        async with side(pair[0]) as old, side(pair[1]) as new:
            yield DualSaver(old, new, phase, journal=tmp_path / "journal.sqlite")

    report = await validate(factory)
    failures = {cap: r.failures for cap, r in report.results.items() if r.detected and not r.passed}
    assert not failures, failures
    assert report.passed_all_base()
    detected = {cap for cap, r in report.results.items() if r.detected}
    # What both sides implement, no more: Redis on both sides can do everything.
    assert detected - BASE == EXTENDED_BY_PAIR[pair]
    assert all(report.results[c].tests_passed > 0 for c in EXTENDED_BY_PAIR[pair])
    assert all(report.results[c].tests_passed > 0 for c in BASE)
