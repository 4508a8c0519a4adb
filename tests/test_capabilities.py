"""Extended capabilities (delete_for_runs, copy_thread, prune) on DualSaver and TieredSaver for
every pair with native adapters, whatever the wrapped savers implement: the official
conformance suite passes for each capability advertised, over real stores, and both stores
end up alike after each one."""

from __future__ import annotations

import operator
from typing import Annotated

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from dualsaver import DualSaver, Phase, TieredSaver
from dualsaver.stores import aopen_saver, native_for, open_saver
from tests.savers import truncate_postgres

EXTENDED = {"delete_for_runs", "copy_thread", "prune"}


def _urls(request: pytest.FixtureRequest, tmp_path, kind: str, side: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/{side}.sqlite"
    if kind == "memory":
        return f"memory://{side}-{abs(hash(request.node.nodeid))}"
    if kind == "postgres":
        return request.getfixturevalue("postgres").create_database(f"{side}_{abs(hash(request.node.nodeid))}")
    if kind == "redis":
        return request.getfixturevalue("redis_url")
    if kind == "langgraph-redis":
        return request.getfixturevalue("langgraph_redis_url")
    raise ValueError(kind)


async def _fresh(request: pytest.FixtureRequest, kind: str, url: str) -> None:
    """Empty a store between two conformance tests (each wants a fresh saver)."""
    if kind == "postgres":
        await truncate_postgres(url)
    elif kind == "redis":
        request.getfixturevalue("redis_server").flushall()
    elif kind == "langgraph-redis":
        request.getfixturevalue("redis_stack").flushall()


async def _conformance(name: str, build, extended: set[str]) -> None:
    @checkpointer_test(name=name)
    async def factory():
        async for saver in build():
            yield saver

    report = await validate(factory)
    failures = {cap: r.failures for cap, r in report.results.items() if r.detected and not r.passed}
    assert not failures, failures
    ran = {cap.value if hasattr(cap, "value") else str(cap): r for cap, r in report.results.items()}
    for capability in extended:
        assert ran[capability].detected and ran[capability].tests_passed > 0, capability


DUAL_CASES = [
    ("sqlite", "postgres", Phase.SHADOW_WRITE),
    ("sqlite", "postgres", Phase.READ_SWITCH),
    ("postgres", "redis", Phase.SHADOW_WRITE),
    ("postgres", "langgraph-redis", Phase.BACKFILL),
    ("memory", "memory", Phase.DECOMMISSION),
]


@pytest.mark.slow
@pytest.mark.parametrize("old_kind,new_kind,phase", DUAL_CASES, ids=lambda v: str(v))
async def test_dualsaver_conformance_for_every_capability(request, tmp_path, old_kind, new_kind, phase):
    old_url, new_url = _urls(request, tmp_path, old_kind, "old"), _urls(request, tmp_path, new_kind, "new")

    async def build():
        await _fresh(request, old_kind, old_url)
        await _fresh(request, new_kind, new_url)
        async with aopen_saver(old_url) as old, aopen_saver(new_url) as new:
            yield DualSaver(old, new, phase, journal=tmp_path / "journal.sqlite", write_behind=False)

    await _conformance(f"DualSaver[{old_kind}->{new_kind}, {phase}]", build, EXTENDED)


@pytest.mark.slow
@pytest.mark.parametrize("hot_kind", ["redis", "langgraph-redis"])
async def test_tieredsaver_conformance_for_every_capability(request, tmp_path, hot_kind):
    durable_url, hot_url = _urls(request, tmp_path, "postgres", "durable"), _urls(request, tmp_path, hot_kind, "hot")

    async def build():
        await _fresh(request, "postgres", durable_url)
        await _fresh(request, hot_kind, hot_url)
        async with aopen_saver(durable_url) as durable, aopen_saver(hot_url) as hot:
            yield TieredSaver(durable, hot, journal=tmp_path / "journal.sqlite", write_behind=False)

    await _conformance(f"TieredSaver[postgres+{hot_kind}]", build, EXTENDED)


async def test_a_pair_without_any_override_still_offers_every_async_capability(tmp_path, pg_url):
    """SQLite implements none of them; the composite offers all three, in async form."""
    async with aopen_saver(f"sqlite:///{tmp_path}/a.sqlite") as lite, aopen_saver(pg_url) as pg:
        dual = DualSaver(lite, pg, journal=":memory:")
        detected = {c.value for c in DetectedCapabilities.from_instance(dual).detected}
    assert detected >= EXTENDED


def _put_args(saver, thread_id: str, run_id: str, parent: str | None, ns: str = ""):
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": [f"{thread_id}:{run_id}"]}
    checkpoint["channel_versions"] = {"messages": saver.get_next_version(None, None)}
    conf = {"thread_id": thread_id, "checkpoint_ns": ns}
    if parent:
        conf["checkpoint_id"] = parent
    metadata = {"source": "loop", "step": 1, "run_id": run_id}
    return {"configurable": conf}, checkpoint, metadata, checkpoint["channel_versions"]


async def _history(saver, thread_id: str) -> list:
    from dualsaver.stores import anative_for

    return [(i.checkpoint_ns, i.checkpoint_id, i.metadata.get("run_id"), i.writes)
            async for i in anative_for(saver).aread_thread(thread_id)]


async def _runs(saver, thread_id: str) -> set:
    return {run for _, _, run, _ in await _history(saver, thread_id)}


async def test_each_capability_leaves_both_stores_alike(tmp_path, pg_url):
    """SQLite (none of the three) -> PostgreSQL (prune only): a rollback's run is gone from
    both, a copy is in both, a prune leaves the same newest checkpoint in both."""
    async with aopen_saver(f"sqlite:///{tmp_path}/old.sqlite") as old, aopen_saver(pg_url) as new:
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", write_behind=False)
        parent = None
        for run_id in ("run-1", "run-1", "run-2"):
            config = await saver.aput(*_put_args(saver, "t", run_id, parent))
            await saver.aput_writes(config, [("messages", run_id)], "task-1")
            parent = config["configurable"]["checkpoint_id"]
        await saver.adelete_for_runs(["run-2"])
        assert await _runs(old, "t") == await _runs(new, "t") == {"run-1"}
        assert (await saver.aget_tuple({"configurable": {"thread_id": "t"}})).metadata["run_id"] == "run-1"
        await saver.acopy_thread("t", "t-copy")
        assert await _history(old, "t-copy") == await _history(new, "t-copy") == await _history(old, "t")
        await saver.aprune(["t"], strategy="keep_latest")
        assert await _history(old, "t") == await _history(new, "t")
        assert len(await _history(new, "t")) == 1
        await saver.aprune(["t-copy"], strategy="delete")
        assert await _history(old, "t-copy") == await _history(new, "t-copy") == []
        await saver.aclose()


async def test_a_secondary_that_misses_a_capability_is_journaled_per_thread_and_repaired(tmp_path, pg_url):
    """The secondary's connection is gone: the call still succeeds on the primary, one journal
    entry names the thread the run touched, and repair from the journal makes new like old."""
    from dualsaver.control.journal import Journal
    from dualsaver.migrate import arepair
    from dualsaver.migrate._repair import repairs_from_journal

    journal = Journal(tmp_path / "j.sqlite")
    async with aopen_saver(f"sqlite:///{tmp_path}/old.sqlite") as old:
        async with aopen_saver(pg_url) as new:
            saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=journal, write_behind=False, circuit_cool_down=None)
            parent = None
            for run_id in ("run-1", "run-2"):
                parent = (await saver.aput(*_put_args(saver, "t", run_id, parent)))["configurable"]["checkpoint_id"]
            await new.conn.close()  # a real outage of the secondary's connection
            await saver.adelete_for_runs(["run-2"])
        assert await _runs(old, "t") == {"run-1"}
        missed = [e for e in journal.pending() if e.operation == "delete_for_runs"]
        assert [(e.store, e.thread_id) for e in missed] == [("new", "t")]
        async with aopen_saver(pg_url) as new:
            assert await _runs(new, "t") == {"run-1", "run-2"}
            result = await arepair(old, new, repairs=repairs_from_journal(journal.pending()))
            assert result.ok
            assert await _history(new, "t") == await _history(old, "t")
        await saver.aclose()


def test_the_sync_forms_over_sync_savers(tmp_path, pg_url):
    """SqliteSaver and PostgresSaver (sync): the same plans, run blocking."""
    from dualsaver.stores import open_saver

    def history(saver, thread_id):
        return sorted((t.config["configurable"]["checkpoint_id"], t.metadata.get("run_id"))
                      for t in saver.list({"configurable": {"thread_id": thread_id}}))

    with open_saver(f"sqlite:///{tmp_path}/old.sqlite") as old, open_saver(pg_url) as new:
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", write_behind=False)
        parent = None
        for run_id in ("run-1", "run-2", "run-3"):
            parent = saver.put(*_put_args(saver, "t", run_id, parent))["configurable"]["checkpoint_id"]
        saver.delete_for_runs(["run-3"])
        saver.copy_thread("t", "t2")
        saver.prune(["t"])
        assert history(old, "t") == history(new, "t") and [r for _, r in history(new, "t")] == ["run-2"]
        assert history(old, "t2") == history(new, "t2") and [r for _, r in history(new, "t2")] == ["run-1", "run-2"]
        saver.close()


_RUNS = ["run-a", "run-b", "run-c"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(["", "child"]), st.sampled_from(_RUNS)),
                     min_size=1, max_size=12),
    operation=st.one_of(
        st.tuples(st.just("delete_for_runs"), st.lists(st.sampled_from([*_RUNS, "run-x"]), max_size=3)),
        st.tuples(st.just("prune"), st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=3, unique=True)),
    ),
)
def test_capabilities_match_a_model_in_both_stores(history, operation):
    """Any history of checkpoints (threads, namespaces, runs), then delete_for_runs or prune
    (keep_latest): SQLite (through its native store) and memory hold exactly what the model
    says is left, the same in both."""
    import sqlite3

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    old = SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
    old.setup()
    new = InMemorySaver()
    saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=":memory:", write_behind=False)
    model = []  # (thread, ns, checkpoint id, run)
    parents: dict[tuple[str, str], str] = {}
    for thread_id, ns, run_id in history:
        config = saver.put(*_put_args(saver, thread_id, run_id, parents.get((thread_id, ns)), ns))
        checkpoint_id = config["configurable"]["checkpoint_id"]
        parents[(thread_id, ns)] = checkpoint_id
        model.append((thread_id, ns, checkpoint_id, run_id))
    kind, names = operation
    if kind == "delete_for_runs":
        saver.delete_for_runs(names)
        model = [m for m in model if m[3] not in names]
    else:
        saver.prune(names, strategy="keep_latest")
        newest = {}
        for thread_id, ns, checkpoint_id, _ in model:
            newest[(thread_id, ns)] = max(newest.get((thread_id, ns), ""), checkpoint_id)
        model = [m for m in model if m[0] not in names or newest[(m[0], m[1])] == m[2]]
    for store in (old, new):
        held = sorted(
            (t, i.checkpoint_ns, i.checkpoint_id, i.metadata["run_id"])
            for t in ("t1", "t2") for i in native_for(store).read_thread(t)
        )
        assert held == sorted(model)
    saver.close()


# --------------------------------------------------------------------------- DeltaChannel


def _extend(state: list[str], writes: list[list[str]]) -> list[str]:
    return [*state, *(x for w in writes for x in w)]


class DeltaState(TypedDict):  # the list is rebuilt from earlier checkpoints' writes (snapshot every 100)
    items: Annotated[list[str], DeltaChannel(_extend, snapshot_frequency=100)]


class PlainState(TypedDict):
    items: Annotated[list[str], operator.add]


def _delta_graph(saver, delta: bool):
    def node(state: dict) -> dict:
        return {"items": [f"seen {len(state['items'])}"]}

    builder = StateGraph(DeltaState if delta else PlainState).add_node("node", node)
    return builder.add_edge(START, "node").add_edge("node", END).compile(checkpointer=saver)


EXPECTED_ITEMS = ["turn 0", "seen 1", "turn 1", "seen 3", "turn 2", "seen 5"]


def _three_turns(graph, thread_id: str) -> None:
    for turn in range(3):
        graph.invoke({"items": [f"turn {turn}"]}, {"configurable": {"thread_id": thread_id}})


def _keys(saver, thread_id: str) -> list:
    return sorted(native_for(saver).checkpoint_keys(thread_id))


def test_keep_latest_refuses_a_thread_a_delta_channel_replays(tmp_path):
    """Its older checkpoints hold the writes the DeltaChannel replays: keep_latest through the
    native plans refuses the thread (as PostgresSaver does), before pruning any thread of the
    call, in both stores; the conversation reads back whole; `delete` and plain threads prune."""
    with open_saver(f"sqlite:///{tmp_path}/old.sqlite") as old, open_saver(f"memory://delta-{tmp_path.name}") as new:
        dual = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "journal.sqlite", write_behind=False)
        delta_graph, plain_graph = _delta_graph(dual, delta=True), _delta_graph(dual, delta=False)
        _three_turns(delta_graph, "delta")
        _three_turns(plain_graph, "plain")
        before = {side: {t: _keys(side, t) for t in ("delta", "plain")} for side in (old, new)}
        with pytest.raises(NotImplementedError, match=r"DeltaChannel: delta$"):
            dual.prune(["plain", "delta"], strategy="keep_latest")
        assert {side: {t: _keys(side, t) for t in ("delta", "plain")} for side in (old, new)} == before
        assert delta_graph.get_state({"configurable": {"thread_id": "delta"}}).values["items"] == EXPECTED_ITEMS
        assert not dual.secondary_failures  # refused by the primary: the secondary was not asked
        dual.prune(["plain"], strategy="keep_latest")
        assert len(_keys(old, "plain")) == len(_keys(new, "plain")) == 1
        assert plain_graph.get_state({"configurable": {"thread_id": "plain"}}).values["items"] == EXPECTED_ITEMS
        dual.prune(["delta"], strategy="delete")
        assert _keys(old, "delta") == _keys(new, "delta") == []


async def test_keep_latest_refuses_a_delta_thread_through_the_async_plans(tmp_path):
    async with aopen_saver(f"sqlite:///{tmp_path}/durable.sqlite") as durable, \
            aopen_saver(f"memory://hot-{tmp_path.name}") as hot:
        tiered = TieredSaver(durable, hot, journal=tmp_path / "journal.sqlite")
        graph = _delta_graph(tiered, delta=True)
        for turn in range(3):
            await graph.ainvoke({"items": [f"turn {turn}"]}, {"configurable": {"thread_id": "delta"}})
        await tiered.aflush()
        kept = _keys(hot, "delta")
        with pytest.raises(NotImplementedError, match="DeltaChannel"):
            await tiered.aprune(["delta"], strategy="keep_latest")
        assert _keys(hot, "delta") == kept and len(kept) > 1
        assert (await graph.aget_state({"configurable": {"thread_id": "delta"}})).values["items"] == EXPECTED_ITEMS
        await tiered.aclose()
