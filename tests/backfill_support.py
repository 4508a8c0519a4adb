"""Helpers for the backfill tests and benchmark: a real graph, and independent store snapshots.

The graph has everything a copy can get wrong: a subgraph (its own checkpoint namespace),
parallel `Send` branches writing one channel through an order-sensitive reducer, a
`DeltaChannel` (history rebuilt from writes), and an `interrupt` (special writes).

The snapshots read each store's tables with plain sqlite3 / psycopg and decode them with the
store's serializer, without going through dualsaver, so they can judge its copies.
"""

from __future__ import annotations

import json
import operator
import sqlite3
from typing import Annotated, Any

from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict


def _concat(state: list[str], writes: list[list[str]]) -> list[str]:
    return [*state, *(x for w in writes for x in w)]


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]  # order-sensitive: parallel branches append
    delta: Annotated[list[str], DeltaChannel(_concat, snapshot_frequency=3)]
    turn: int
    answer: str


class BranchInput(TypedDict):
    i: int
    turn: int


class SubState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    turn: int


def build_graph(checkpointer: Any, branches: int = 3) -> Any:
    sub = StateGraph(SubState)
    sub.add_node("s1", lambda s: {"log": [f"s1-{s.get('turn', 0)}"]})
    sub.add_node("s2", lambda s: {"log": [f"s2-{s.get('turn', 0)}"]})
    sub.add_edge(START, "s1")
    sub.add_edge("s1", "s2")
    sub.add_edge("s2", END)
    subgraph = sub.compile()

    def prep(s: State) -> dict:
        return {"log": [f"prep-{s.get('turn', 0)}"], "delta": [f"d{s.get('turn', 0)}"]}

    def fan(s: State) -> list[Send]:
        return [Send("branch", {"i": i, "turn": s.get("turn", 0)}) for i in range(branches)]

    def branch(s: BranchInput) -> dict:
        return {"log": [f"b{s['i']}-{s['turn']}"], "delta": [f"bd{s['i']}"]}

    def ask(s: State) -> dict:
        answer = interrupt({"question": f"ok {s.get('turn', 0)}?"})
        return {"answer": str(answer), "log": ["asked"]}

    g = StateGraph(State)
    g.add_node("prep", prep)
    g.add_node("branch", branch)
    g.add_node("sub", subgraph)
    g.add_node("ask", ask)
    g.add_edge(START, "prep")
    g.add_conditional_edges("prep", fan, ["branch"])
    g.add_edge("branch", "sub")
    g.add_edge("sub", "ask")
    g.add_edge("ask", END)
    return g.compile(checkpointer=checkpointer)


def run_threads(saver: Any, thread_ids: list[str], turns: int = 2, leave_interrupted: bool = True) -> None:
    """Run `turns` turns per thread (each interrupted, then resumed); the last turn of every
    other thread stays interrupted, so its pending interrupt write must survive a copy."""
    graph = build_graph(saver)
    for n, thread_id in enumerate(thread_ids):
        config = {"configurable": {"thread_id": thread_id}}
        for turn in range(turns):
            graph.invoke({"turn": turn}, config)
            last = turn == turns - 1
            if not (last and leave_interrupted and n % 2 == 0):
                graph.invoke(Command(resume=f"yes-{turn}"), config)


async def arun_threads(saver: Any, thread_ids: list[str], turns: int = 2) -> None:
    graph = build_graph(saver)
    for thread_id in thread_ids:
        config = {"configurable": {"thread_id": thread_id}}
        for turn in range(turns):
            await graph.ainvoke({"turn": turn}, config)
            await graph.ainvoke(Command(resume=f"yes-{turn}"), config)


# ----------------------------------------------------------------------------- snapshots
# key -> (checkpoint, metadata, parent, writes) with writes as
# [(task_id, task_path, idx, channel, value)] in (task_path, task_id, idx) order.


def _sorted_writes(writes: list[tuple]) -> list[tuple]:
    return sorted(writes, key=lambda w: (w[1], w[0], w[2]))


def snapshot_sqlite(path: str, serde: Any) -> dict[tuple[str, str, str], tuple]:
    conn = sqlite3.connect(path)
    try:
        out: dict[tuple[str, str, str], tuple] = {}
        writes: dict[tuple[str, str, str], list] = {}
        for t, ns, cid, task_id, path_, idx, channel, type_, value in conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel,"
            " type, value FROM writes"
        ):
            writes.setdefault((t, ns, cid), []).append(
                (task_id, path_, idx, channel, serde.loads_typed((type_, value)))
            )
        for t, ns, cid, parent, type_, blob, metadata in conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type,"
            " checkpoint, metadata FROM checkpoints"
        ):
            out[(t, ns, cid)] = (
                serde.loads_typed((type_, blob)),
                json.loads(metadata),
                parent,
                _sorted_writes(writes.get((t, ns, cid), [])),
            )
        return out
    finally:
        conn.close()


def snapshot_postgres(url: str, serde: Any) -> dict[tuple[str, str, str], tuple]:
    import psycopg

    out: dict[tuple[str, str, str], tuple] = {}
    with psycopg.connect(url) as conn:
        blobs = {
            (t, ns, ch, ver): (type_, blob)
            for t, ns, ch, ver, type_, blob in conn.execute(
                "SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs"
            )
        }
        writes: dict[tuple[str, str, str], list] = {}
        for t, ns, cid, task_id, path_, idx, channel, type_, blob in conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel,"
            " type, blob FROM checkpoint_writes"
        ):
            writes.setdefault((t, ns, cid), []).append(
                (task_id, path_, idx, channel, serde.loads_typed((type_, blob)))
            )
        for t, ns, cid, parent, checkpoint, metadata in conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint,"
            " metadata FROM checkpoints"
        ):
            values = dict(checkpoint.get("channel_values") or {})
            for ch, ver in (checkpoint.get("channel_versions") or {}).items():
                typed = blobs.get((t, ns, ch, str(ver)))
                if typed is not None and typed[0] != "empty":
                    values[ch] = serde.loads_typed(typed)
            out[(t, ns, cid)] = (
                {**checkpoint, "channel_values": values},
                metadata,
                parent,
                _sorted_writes(writes.get((t, ns, cid), [])),
            )
    return out


def normalize(snapshot: dict[tuple[str, str, str], tuple]) -> dict[tuple[str, str, str], tuple]:
    """Make snapshots of different backends comparable: JSON-ish checkpoint fields compare
    as-is; metadata without keys a backend drops by design (PostgresSaver drops `writes`)."""
    out = {}
    for key, (checkpoint, metadata, parent, writes) in snapshot.items():
        md = {k: v for k, v in (metadata or {}).items() if k != "writes"}
        # PostgresSaver and InMemorySaver rebuild channel_values from blobs by version, so a
        # DeltaChannel snapshot whose version did not change reappears in later checkpoints;
        # SqliteSaver keeps only what each checkpoint held. Both rebuild the same state (the
        # graph views compare that); here snapshots are compared where they were taken.
        values = {
            k: v
            for k, v in (checkpoint.get("channel_values") or {}).items()
            if not (isinstance(v, _DeltaSnapshot) and checkpoint.get("updated_channels") is not None
                    and k not in checkpoint["updated_channels"])
        }
        out[key] = ({**checkpoint, "channel_values": values}, md, parent or None, writes)
    return out


class OpaqueSaver(BaseCheckpointSaver):
    """A saver dualsaver has no adapter for (it only sees the public API), over an
    InMemorySaver."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = InMemorySaver()

    def get_tuple(self, config):
        return self.inner.get_tuple(config)

    def list(self, config, **kwargs):
        return self.inner.list(config, **kwargs)

    def put(self, config, checkpoint, metadata, new_versions):
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config, writes, task_id, task_path=""):
        return self.inner.put_writes(config, writes, task_id, task_path)

    async def aget_tuple(self, config):
        return self.get_tuple(config)

    async def alist(self, config, **kwargs):
        for t in self.list(config, **kwargs):
            yield t

    async def aput(self, config, checkpoint, metadata, new_versions):
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return self.put_writes(config, writes, task_id, task_path)

    def get_next_version(self, current, channel):
        return self.inner.get_next_version(current, channel)


class ShadowWriter(BaseCheckpointSaver):
    """Live traffic as shadow-write makes it, without depending on DualSaver: reads from old,
    writes old first, then new (each gets its own copy of what the caller handed over)."""

    def __init__(self, old: Any, new: Any) -> None:
        super().__init__(serde=old.serde)
        self.old, self.new = old, new

    def get_tuple(self, config):
        return self.old.get_tuple(config)

    def list(self, config, **kwargs):
        return self.old.list(config, **kwargs)

    def put(self, config, checkpoint, metadata, new_versions):
        import copy

        args = copy.deepcopy((checkpoint, metadata, new_versions))
        result = self.old.put(config, checkpoint, metadata, new_versions)
        self.new.put(config, *args)
        return result

    def put_writes(self, config, writes, task_id, task_path=""):
        import copy

        copied = copy.deepcopy(list(writes))
        self.old.put_writes(config, writes, task_id, task_path)
        self.new.put_writes(config, copied, task_id, task_path)

    def get_delta_channel_history(self, *, config, channels):
        return self.old.get_delta_channel_history(config=config, channels=channels)

    def get_next_version(self, current, channel):
        return self.old.get_next_version(current, channel)
