"""The graph the Agent Server tests serve: echo a message, ask (interrupt) on "ask", take its
time on "slow" (so a second run can roll it back)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict):
    messages: Annotated[list[str], operator.add]


async def respond(state: State) -> dict:
    last = state["messages"][-1]
    if last == "slow":
        await asyncio.sleep(30)
    if last == "ask":
        return {"messages": [f"answer:{interrupt('which colour?')}"]}
    return {"messages": [f"echo:{last}"]}


graph = StateGraph(State).add_node("respond", respond).add_edge(START, "respond").add_edge("respond", END).compile()
