"""Real compiled LangGraph graphs for the tests: a subgraph, parallel Send branches, an interrupt.

`build_agent(checkpointer)` returns a graph whose every run:
  plan -> (Send) worker x N in parallel -> review (a subgraph, its own namespace)
       -> approve (interrupt: waits for a human) -> finish
`results` uses an order-sensitive reducer (list concatenation), so a copy that reorders
the writes of parallel branches rebuilds a different state.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt


class AgentState(TypedDict, total=False):
    topic: str
    items: list[str]
    results: Annotated[list[str], operator.add]
    summary: str
    approved: bool
    log: Annotated[list[str], operator.add]


class ReviewState(TypedDict, total=False):
    results: list[str]
    summary: str


class ReviewOutput(TypedDict, total=False):
    summary: str  # only the summary goes back: `results` must not be added twice


def _plan(state: AgentState) -> dict[str, Any]:
    topic = state["topic"]
    return {"items": [f"{topic}-{i}" for i in range(3)], "log": ["plan"]}


def _fan_out(state: AgentState) -> list[Send]:
    return [Send("worker", {"topic": item}) for item in state["items"]]


def _worker(state: AgentState) -> dict[str, Any]:
    return {"results": [state["topic"].upper()]}


def _draft(state: ReviewState) -> dict[str, Any]:
    return {"summary": " + ".join(state.get("results", []))}


def _polish(state: ReviewState) -> dict[str, Any]:
    return {"summary": f"[{state['summary']}]"}


def build_review():
    sub = StateGraph(ReviewState, output_schema=ReviewOutput)
    sub.add_node("draft", _draft)
    sub.add_node("polish", _polish)
    sub.add_edge(START, "draft")
    sub.add_edge("draft", "polish")
    sub.add_edge("polish", END)
    return sub.compile()


def _approve(state: AgentState) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "summary": state.get("summary")})
    return {"approved": bool(answer), "log": [f"approved={bool(answer)}"]}


def _finish(state: AgentState) -> dict[str, Any]:
    return {"log": ["finish"]}


def build_agent(checkpointer: Any):
    graph = StateGraph(AgentState)
    graph.add_node("plan", _plan)
    graph.add_node("worker", _worker)
    graph.add_node("review", build_review())
    graph.add_node("approve", _approve)
    graph.add_node("finish", _finish)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", _fan_out, ["worker"])
    graph.add_edge("worker", "review")
    graph.add_edge("review", "approve")
    graph.add_edge("approve", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)


def config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def run_turn(app: Any, thread_id: str, topic: str, approve: bool = True) -> dict[str, Any]:
    """One full turn: runs to the interrupt, then resumes it. Returns the final state."""
    cfg = config(thread_id)
    app.invoke({"topic": topic}, cfg)
    assert app.get_state(cfg).next == ("approve",), app.get_state(cfg).next
    return app.invoke(Command(resume=approve), cfg)


async def arun_turn(app: Any, thread_id: str, topic: str, approve: bool = True) -> dict[str, Any]:
    cfg = config(thread_id)
    await app.ainvoke({"topic": topic}, cfg)
    assert (await app.aget_state(cfg)).next == ("approve",)
    return await app.ainvoke(Command(resume=approve), cfg)


def expected_results(*topics: str) -> list[str]:
    """`results` after one turn per topic, in the order live execution applies them."""
    out: list[str] = []
    for topic in topics:
        out += [f"{topic}-{i}".upper() for i in range(3)]
    return out
