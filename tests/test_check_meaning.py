"""The check compares by meaning: a LangChain object and its serialized constructor form, a
`Send` and its ``__send__`` dict, the official Redis saver's own checkpoint keys, and the
order of special writes are not divergences; any other difference still is."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Send

from dualsaver.checker._diff import ThreadSide, diff_thread
from dualsaver.checker.canonical import canonical, digest
from dualsaver.stores import StoredCheckpoint, StoredWrite

MESSAGES = [
    HumanMessage("hi", id="h1"),
    AIMessage("calling", id="a1", tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "c1"}]),
    ToolMessage("found", tool_call_id="c1", id="t1"),
]


def _serialized(value):
    """The official Redis saver's public form of a value: messages as their lc constructor
    dicts, Sends as dicts."""
    if isinstance(value, Send):
        return {"__send__": True, "node": value.node, "arg": _serialized(value.arg)}
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _serialized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_serialized(v) for v in value]
    return value


_objects = st.sampled_from([*MESSAGES, Send("worker", {"topic": "t-1"}), Send("w", [HumanMessage("n", id="n1")])])
_trees = st.recursive(
    _objects | st.text(max_size=5) | st.integers(-5, 5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@given(_trees)
def test_an_object_and_its_serialized_form_digest_and_canonicalize_alike(value) -> None:
    form = _serialized(value)
    assert digest(form) == digest(value)
    assert json.dumps(canonical(form), sort_keys=True) == json.dumps(canonical(value), sort_keys=True)


def test_a_different_value_in_either_form_is_different() -> None:
    edited = HumanMessage("hi!", id="h1")
    assert digest(edited.to_json()) != digest(MESSAGES[0]) and digest(edited) != digest(MESSAGES[0].to_json())
    assert digest({"__send__": True, "node": "worker", "arg": {"topic": "t-2"}}) != digest(Send("worker", {"topic": "t-1"}))
    # a dict that only looks like a form (a fourth key) is a dict, and so is a refused class
    assert digest({"__send__": True, "node": "w", "arg": 1, "x": 2}) != digest(Send("w", 1))
    unknown = {"lc": 1, "type": "constructor", "id": ["not_a_module", "Thing"], "kwargs": {}}
    assert canonical(unknown) == unknown


def _item(writes, **checkpoint) -> StoredCheckpoint:
    cp = {"v": 4, "id": "c1", "ts": "2026-01-01T00:00:00+00:00", "channel_values": {"messages": MESSAGES},
          "channel_versions": {"messages": "1"}, "versions_seen": {}, "updated_channels": ["messages"], **checkpoint}
    return StoredCheckpoint("t", "", "c1", None, cp, {"source": "loop", "step": 1}, tuple(writes))


def _diff(old: StoredCheckpoint, new: StoredCheckpoint, new_exact: bool = False):
    a, b = ThreadSide(), ThreadSide()
    a.add(old)
    b.add(new)
    return diff_thread("t", a, b, new_exact=new_exact).divergences


def _public(writes):
    """Writes as the public-API adapter reads them: no task path, idx by position per task
    (special writes keep their fixed negative idx)."""
    from langgraph.checkpoint.base import WRITES_IDX_MAP

    seen: dict[str, int] = {}
    out = []
    for w in writes:
        n = seen.get(w.task_id, 0)
        seen[w.task_id] = n + 1
        out.append(StoredWrite(w.task_id, "", WRITES_IDX_MAP.get(w.channel, n), w.channel, w.value))
    return out


EXACT = [
    StoredWrite("task-a", "~__pregel_pull, approve", -4, "__resume__", [True]),
    StoredWrite("task-a", "~__pregel_pull, approve", -3, "__interrupt__", {"question": "ok?"}),
    StoredWrite("task-a", "~__pregel_pull, approve", 1, "approved", True),
    StoredWrite("task-a", "~__pregel_pull, approve", 2, "log", ["approved"]),
    StoredWrite("task-b", "~__pregel_push, 0", 0, "__pregel_tasks", Send("worker", {"topic": "t-1"})),
]


def test_the_official_savers_public_answers_are_no_divergence() -> None:
    # Its order: special writes by key (-3 before -4), messages and Sends serialized, and
    # its storage tag and pending_sends in the checkpoint.
    official = [EXACT[1], EXACT[0], EXACT[2], EXACT[3], EXACT[4]]
    official = [StoredWrite(w.task_id, w.task_path, w.idx, w.channel, _serialized(w.value)) for w in official]
    new = _item(_public(official), type="json", pending_sends=[], channel_values={"messages": _serialized(MESSAGES)})
    assert _diff(_item(EXACT), new) == []


def test_any_other_difference_still_is_one() -> None:
    swapped = [EXACT[0], EXACT[1], EXACT[3], EXACT[2], EXACT[4]]  # two regular writes of a task
    (d,) = _diff(_item(EXACT), _item(_public(swapped)))
    assert d.kind == "writes_mismatch" and d.detail["difference"] == "order"
    (d,) = _diff(_item(EXACT), _item(EXACT, channel_values={"messages": _serialized(MESSAGES[:2])}), new_exact=True)
    assert d.kind == "checkpoint_mismatch"
    (d,) = _diff(_item(EXACT, v=2, pending_sends=["a send"]), _item(EXACT, v=2, pending_sends=[]), new_exact=True)
    assert d.kind == "checkpoint_mismatch" and d.detail["fields"][0]["field"] == "checkpoint.pending_sends"
    (d,) = _diff(_item(EXACT), _item(EXACT, type="other"), new_exact=True)
    assert d.detail["fields"][0]["field"] == "checkpoint.type"
