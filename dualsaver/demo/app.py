"""The demo's LangGraph application: a small support agent with no language model.

Each turn: the user's message is triaged, parallel "lookups" fan out with Send, a
subgraph drafts the answer, and the reply joins the conversation. Given a long-term store, the
agent also remembers each customer across conversations (a profile and one note per turn under
``("customers", thread_id)``): the other half of its memory, which the demo migrates too.
Deterministic, so a migrated conversation can be compared word for word. Used by
`dualsaver demo` and the benchmarks.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore
from langgraph.types import Send


class Conversation(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    topics: list[str]
    findings: Annotated[list[str], operator.add]
    draft: str
    turns: int


class Lookup(TypedDict):
    topic: str


class Drafting(TypedDict, total=False):
    findings: list[str]
    draft: str


class DraftOut(TypedDict, total=False):
    draft: str


def _triage(state: Conversation) -> dict[str, Any]:
    text = str(state["messages"][-1].content)
    words = [w.strip("?.,!").lower() for w in text.split() if len(w) > 3]
    return {"topics": words[:3] or ["general"], "findings": [], "turns": state.get("turns", 0) + 1}


def _fan_out(state: Conversation) -> list[Send]:
    return [Send("lookup", {"topic": t}) for t in state["topics"]]


def _lookup(state: Lookup) -> dict[str, Any]:
    return {"findings": [f"note on {state['topic']}"]}


def _outline(state: Drafting) -> dict[str, Any]:
    return {"draft": "; ".join(state.get("findings", []))}


def _word(state: Drafting) -> dict[str, Any]:
    return {"draft": f"Here is what I found: {state['draft']}."}


def _drafting():
    sub = StateGraph(Drafting, output_schema=DraftOut)
    sub.add_node("outline", _outline)
    sub.add_node("word", _word)
    sub.add_edge(START, "outline")
    sub.add_edge("outline", "word")
    sub.add_edge("word", END)
    return sub.compile()


def _reply(state: Conversation, config: RunnableConfig) -> dict[str, Any]:
    store = get_store()
    if store is not None:  # the long-term memory: what this customer asked about, turn by turn
        customer = ("customers", str(config["configurable"]["thread_id"]))
        turn = state.get("turns", 0)
        store.put(customer, "profile", {"topics": state["topics"], "turns": turn})
        store.put(customer, f"turn-{turn:03d}", {"asked": str(state["messages"][-1].content)})
    return {"messages": [AIMessage(content=state["draft"])]}


def build_support_agent(checkpointer: Any, store: BaseStore | None = None) -> Any:
    graph = StateGraph(Conversation)
    graph.add_node("triage", _triage)
    graph.add_node("lookup", _lookup)
    graph.add_node("draft", _drafting())
    graph.add_node("reply", _reply)
    graph.add_edge(START, "triage")
    graph.add_conditional_edges("triage", _fan_out, ["lookup"])
    graph.add_edge("lookup", "draft")
    graph.add_edge("draft", "reply")
    graph.add_edge("reply", END)
    return graph.compile(checkpointer=checkpointer, store=store)


QUESTIONS = [
    "Where is my order shipment today?",
    "Please change the delivery address",
    "Refund the damaged blender please",
    "Which warranty covers the blender motor?",
    "Thanks, close the ticket",
]


def say(app: Any, thread_id: str, text: str) -> dict[str, Any]:
    return app.invoke({"messages": [HumanMessage(content=text)]}, {"configurable": {"thread_id": thread_id}})


async def asay(app: Any, thread_id: str, text: str) -> dict[str, Any]:
    cfg = {"configurable": {"thread_id": thread_id}}
    return await app.ainvoke({"messages": [HumanMessage(content=text)]}, cfg)
