"""The graph the Agent Server tests serve: echo a message, ask (interrupt) on "ask", take its
time on "slow" (so a second run can roll it back); "remember:<fact>" writes the fact to the
long-term store through `get_store()`, "recall:<words>" searches it (semantically, when the
store has an index) through `runtime.store`."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated

from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from typing_extensions import TypedDict

MEMORIES = ("memories", "chat")


class State(TypedDict):
    messages: Annotated[list[str], operator.add]


async def remember(fact: str) -> str:
    await get_store().aput(MEMORIES, fact.replace(" ", "-"), {"text": fact})
    item = await get_store().aget(MEMORIES, fact.replace(" ", "-"))  # read back what was written
    return f"remembered:{item.value['text'] if item else None}"


async def recall(words: str, runtime: Runtime) -> str:
    assert runtime.store is not None
    found = await runtime.store.asearch(("memories",), query=words, limit=1)
    return f"recalled:{found[0].value['text'] if found else None}"


async def respond(state: State, runtime: Runtime) -> dict:
    last = state["messages"][-1]
    if last == "slow":
        await asyncio.sleep(30)
    if last == "ask":
        return {"messages": [f"answer:{interrupt('which colour?')}"]}
    if last.startswith("remember:"):
        return {"messages": [await remember(last.split(":", 1)[1])]}
    if last.startswith("recall:"):
        return {"messages": [await recall(last.split(":", 1)[1], runtime)]}
    return {"messages": [f"echo:{last}"]}


graph = StateGraph(State).add_node("respond", respond).add_edge(START, "respond").add_edge("respond", END).compile()
