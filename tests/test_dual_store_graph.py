"""A real compiled graph whose nodes read and write the long-term store (`get_store()`) beside
its checkpointer, migrated SQLite -> PostgreSQL through every phase by a DualSaver and a
DualStore that share one phase source. Its answers are right in each phase (they depend on
what the store and the checkpoints hold), and the new store ends up with every item of the
old one, including a profile written before the migration (copied when read-switch reads it)."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph

from dualsaver import DualSaver, DualStore, Phase, backfill
from dualsaver.control.sources import StaticPhase
from tests.savers import sync_saver
from tests.store_support import contents, sync_store


class Turn(TypedDict, total=False):
    user: str
    message: str
    answers: Annotated[list[str], operator.add]  # the checkpointer keeps every answer of the thread


def _remember(state: Turn) -> dict:
    store, ns = get_store(), ("users", state["user"])
    profile = store.get(ns, "profile")
    visits = (profile.value["visits"] if profile else 0) + 1
    store.put(ns, "profile", {"text": f"{state['user']} profile", "visits": visits})
    store.put(("memories", state["user"]), f"m{visits}", {"text": state["message"]})
    return {"answers": [f"visit {visits}"]}


def _recall(state: Turn) -> dict:
    (best,) = get_store().search(("memories", state["user"]), query=state["message"], limit=1)
    return {"answers": [f"recalled {best.value['text']} ({len(state['answers'])} answers so far)"]}


def build(checkpointer, store):
    graph = StateGraph(Turn)
    graph.add_node("remember", _remember)
    graph.add_node("recall", _recall)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "recall")
    graph.add_edge("recall", END)
    return graph.compile(checkpointer=checkpointer, store=store)


USERS = ["ada", "bob"]
MESSAGES = {Phase.SHADOW_WRITE: "apple", Phase.BACKFILL: "banana", Phase.READ_SWITCH: "cherry",
            Phase.DECOMMISSION: "apple pie"}


def test_a_graph_with_a_store_migrates_through_every_phase(tmp_path, pg_url):
    with sync_saver("sqlite", tmp=tmp_path) as s_old, sync_saver("postgres", pg_url=pg_url) as s_new, \
            sync_store("sqlite", tmp=tmp_path) as old, sync_store("postgres", pg_url=pg_url) as new:
        old.put(("users", "ada"), "profile", {"text": "ada profile", "visits": 10})  # before the migration
        source = StaticPhase(Phase.SHADOW_WRITE, "test")
        saver = DualSaver(s_old, s_new, phase=source, journal=tmp_path / "j.sqlite")
        store = DualStore(old, new, phase=saver.phase_source, journal=tmp_path / "j.sqlite")
        graph = build(saver, store)
        visits = {"ada": 10, "bob": 0}
        for n, phase in enumerate(MESSAGES):
            source.phase = phase
            if phase is Phase.BACKFILL:
                assert backfill(s_old, s_new).failed == 0  # the checkpoints' history (items: the store backfill)
            for user in USERS:
                visits[user] += 1
                config = {"configurable": {"thread_id": f"thread-{user}"}}
                out = graph.invoke({"user": user, "message": MESSAGES[phase]}, config)
                assert out["answers"][-2:] == [
                    f"visit {visits[user]}", f"recalled {MESSAGES[phase]} ({2 * n + 1} answers so far)"
                ], (phase, user)
                assert saver.phase is store.phase is phase
            if phase is Phase.READ_SWITCH:
                assert store.flush(timeout=30)
                assert contents(new) == contents(old)  # the profile from before came along when read
        held_new, held_old = contents(new), contents(old)
        assert set(held_old) <= set(held_new)
        assert held_new[(("users", "ada"), "profile")]["visits"] == 14  # decommission wrote new only
        assert held_old[(("users", "ada"), "profile")]["visits"] == 13
        assert not saver.secondary_failures and not store.secondary_failures
        store.close()
        saver.close()
