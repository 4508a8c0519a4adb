"""Helpers for the check / report / repair tests: a real graph, store pairs, planted divergences.

The graph produces what a divergence can hide in: LangChain messages (pydantic), sets,
datetimes, a subgraph (its own namespace), parallel `Send` branches (writes of several
tasks into one channel) and an `interrupt` (special writes).

Planting works on REAL stores through their own rows: a thread is read natively, deleted
with the saver's `delete_thread`, and written back with one row changed, so what the check
sees is exactly what a faulty migration would have left. `corrupt_*` break a stored blob
with plain SQL, as disk or a bad deploy would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import sqlite3
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict

from dualsaver.migrate import copy_thread
from dualsaver.stores import native_for, open_saver
from dualsaver.stores.native import StoredCheckpoint, StoredWrite

AES_KEY = b"0123456789abcdef"


def encrypted_serde(key: bytes = AES_KEY) -> EncryptedSerializer:
    return EncryptedSerializer.from_pycryptodome_aes(key=key)


def pickling_serde() -> JsonPlusSerializer:
    """Another serializer configuration than the default (a pickle fallback): other serde keys."""
    return JsonPlusSerializer(pickle_fallback=True)


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    results: Annotated[list[str], operator.add]  # order-sensitive: parallel branches append
    tags: set[str]
    at: dt.datetime
    summary: str


class Branch(TypedDict):
    item: str


class Review(TypedDict, total=False):
    results: list[str]
    summary: str


def _plan(s: State) -> dict:
    n = len(s.get("messages", []))
    return {
        "messages": [AIMessage(f"planning {n}", id=f"ai-plan-{n}")],
        "tags": {"plan", f"n{n}"},
        "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=n),
    }


def _fan(s: State) -> list[Send]:
    n = len(s.get("messages", []))
    return [Send("worker", {"item": f"x{n}-{i}"}) for i in range(3)]


def _worker(s: Branch) -> dict:
    return {"results": [s["item"].upper()]}


def _approve(s: State) -> dict:
    answer = interrupt({"question": "approve?", "summary": s.get("summary")})
    return {"messages": [HumanMessage(str(answer), id=f"h-{len(s['messages'])}")]}


def build_graph(checkpointer: Any) -> Any:
    sub = StateGraph(Review)
    sub.add_node("draft", lambda s: {"summary": "+".join(s.get("results", []))})
    sub.add_node("polish", lambda s: {"summary": f"[{s['summary']}]"})
    sub.add_edge(START, "draft")
    sub.add_edge("draft", "polish")
    sub.add_edge("polish", END)

    g = StateGraph(State)
    g.add_node("plan", _plan)
    g.add_node("worker", _worker)
    g.add_node("review", sub.compile())
    g.add_node("approve", _approve)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", _fan, ["worker"])
    g.add_edge("worker", "review")
    g.add_edge("review", "approve")
    g.add_edge("approve", END)
    return g.compile(checkpointer=checkpointer)


def cfg(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def run_turn(app: Any, thread_id: str, text: str = "hello") -> None:
    """One turn: runs to the interrupt, then resumes it."""
    app.invoke({"messages": [HumanMessage(text, id=f"h0-{text}")]}, cfg(thread_id))
    app.invoke(Command(resume="yes"), cfg(thread_id))


async def arun_turn(app: Any, thread_id: str, text: str = "hello") -> None:
    await app.ainvoke({"messages": [HumanMessage(text, id=f"h0-{text}")]}, cfg(thread_id))
    await app.ainvoke(Command(resume="yes"), cfg(thread_id))


def populate(saver: Any, threads: Iterable[str], turns: int = 1) -> None:
    app = build_graph(saver)
    for t in threads:
        for n in range(turns):
            run_turn(app, t, f"turn{n}")


def sqlite_history(path: Any, threads: Iterable[str]) -> str:
    """A SQLite file at `path` holding the real graph's history of `threads`; its URL."""
    url = f"sqlite:///{path}"
    with open_saver(url) as saver:
        populate(saver, threads)
    return url


def clone(source: Any, target: Any) -> None:
    """Copy every thread source -> target (the backfill's copy, insert-if-absent)."""
    for t in list(native_for(source).thread_ids()):
        result = copy_thread(source, target, t)
        assert result.ok, result


def items(saver: Any, thread_id: str) -> list[StoredCheckpoint]:
    return list(native_for(saver).read_thread(thread_id))


def rewrite_thread(
    saver: Any,
    thread_id: str,
    transform: Callable[[list[StoredCheckpoint]], list[StoredCheckpoint]],
) -> None:
    """Replace the stored thread by `transform(its rows)`."""
    rows = transform(items(saver, thread_id))
    saver.delete_thread(thread_id)
    if rows:
        native_for(saver).write_checkpoints(rows)


# --------------------------------------------------------------------------- plants
# Each returns the rows of the thread with one divergence planted at rows[i].


def drop(rows: list[StoredCheckpoint], i: int) -> list[StoredCheckpoint]:
    return rows[:i] + rows[i + 1 :]


def with_checkpoint(row: StoredCheckpoint, how: str) -> StoredCheckpoint:
    cp = dict(row.checkpoint)
    if how == "value":
        values = dict(cp["channel_values"])
        values["summary"] = "planted"
        cp["channel_values"] = values
        versions = dict(cp["channel_versions"])
        versions.setdefault("summary", "00000000000000000000000000000099.0")
        cp["channel_versions"] = versions
        return dataclasses.replace(row, checkpoint=cp)
    if how == "versions_seen":
        seen = {k: dict(v) for k, v in cp["versions_seen"].items()}
        seen["planted-node"] = {"planted": 1}
        cp["versions_seen"] = seen
        return dataclasses.replace(row, checkpoint=cp)
    if how == "parent":
        return dataclasses.replace(row, parent_checkpoint_id="planted-parent")
    raise ValueError(how)


def with_metadata(row: StoredCheckpoint) -> StoredCheckpoint:
    return dataclasses.replace(row, metadata={**row.metadata, "planted": "yes"})


def with_writes(row: StoredCheckpoint, how: str) -> StoredCheckpoint:
    writes = list(row.writes)
    if how == "add" or not writes:
        writes.append(StoredWrite("planted-task", "", 0, "results", ["PLANTED"]))
    elif how == "value":
        w = writes[0]
        writes[0] = dataclasses.replace(w, value={"planted": True})
    elif how == "drop":
        writes.pop()
    else:
        raise ValueError(how)
    return dataclasses.replace(row, writes=tuple(writes))


def extra_checkpoint(row: StoredCheckpoint) -> StoredCheckpoint:
    """A checkpoint no other store has (same content, an id of its own)."""
    new_id = row.checkpoint_id[:-4] + "ffff"
    cp = {**row.checkpoint, "id": new_id}
    return dataclasses.replace(row, checkpoint_id=new_id, checkpoint=cp, writes=())


# --------------------------------------------------------------------------- corruption


def corrupt_sqlite(path: str, thread_id: str, ns: str, checkpoint_id: str) -> None:
    with sqlite3.connect(path) as conn:
        cur = conn.execute(
            "UPDATE checkpoints SET checkpoint = x'c1c1c1c1' WHERE thread_id = ?"
            " AND checkpoint_ns = ? AND checkpoint_id = ?",
            (thread_id, ns, checkpoint_id),
        )
        assert cur.rowcount == 1


def corrupt_postgres_writes(
    url: str, thread_id: str, ns: str, checkpoint_id: str, new_blob: str = "'\\xc1c1c1c1'::bytea"
) -> None:
    """Break the value of every pending write of one checkpoint (`new_blob`: SQL of its new bytes)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(
            f"UPDATE checkpoint_writes SET blob = {new_blob} WHERE thread_id = %s"
            " AND checkpoint_ns = %s AND checkpoint_id = %s",
            (thread_id, ns, checkpoint_id),
        )
        assert cur.rowcount >= 1


def tamper_postgres_writes(url: str, thread_id: str, ns: str, checkpoint_id: str) -> None:
    """Flip one bit of the stored bytes of every pending write of one checkpoint (in an
    encrypted store, of its MAC tag: the cipher refuses them)."""
    corrupt_postgres_writes(url, thread_id, ns, checkpoint_id, "set_byte(blob, 20, get_byte(blob, 20) # 1)")
