"""Canonical form and digests: equal content gives equal digests, across serializers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections import OrderedDict
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Send

from dualsaver.checker.canonical import canonical, canonical_json, digest
from tests.check_support import encrypted_serde

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what msgpack carries
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    | st.frozensets(st.text(max_size=5) | ints, max_size=4),
    max_leaves=20,
)


@dataclasses.dataclass
class Note:
    text: str
    tags: list[str]


def serializers():
    return [JsonPlusSerializer(), encrypted_serde(), JsonPlusSerializer(pickle_fallback=True)]


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_digest_equality_is_canonical_equality(a, b):
    # The fast (msgpack) and the total (JSON) routes agree on what "equal" means.
    assert (digest(a) == digest(b)) == (canonical_json(a) == canonical_json(b))


@settings(max_examples=200, deadline=None)
@given(values)
def test_digest_survives_every_serializer(value):
    expected = digest(value)
    for serde in serializers():
        decoded = serde.loads_typed(serde.dumps_typed(value))
        assert digest(decoded) == expected
        assert canonical_json(decoded) == canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [
        [HumanMessage("hi", id="1"), AIMessage("yo", id="2", tool_calls=[])],
        ToolMessage("42", tool_call_id="c1", id="t"),
        {"when": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "id": uuid.UUID(int=7)},
        {"tags": {"b", "a", "c"}, "amount": Decimal("1.10")},
        Send("worker", {"item": "x"}),
        Note("n", ["a"]),
        OrderedDict(b=1, a=2),
    ],
    ids=["messages", "tool-message", "datetime-uuid", "set-decimal", "send", "dataclass", "ordered"],
)
def test_rich_values_equal_across_serializers(value):
    for serde in serializers():
        decoded = serde.loads_typed(serde.dumps_typed(value))
        assert digest(decoded) == digest(value), serde
    json.dumps(canonical(value))  # always JSON-able


def test_content_differences_change_the_digest():
    assert digest(HumanMessage("hi", id="1")) != digest(HumanMessage("hi!", id="1"))
    assert digest(HumanMessage("hi", id="1")) != digest(AIMessage("hi", id="1"))
    assert digest({"a": 1}) != digest({"a": True})  # bool is not int
    assert digest({"a": 1}) != digest({"a": 1.0})
    assert digest({1: "x"}) != digest({"1": "x"})
    assert digest(b"x") != digest("x")
    assert digest({"x"}) != digest(["x"])
    # ...and order-only differences of dicts and sets do not.
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({3, 1, 2}) == digest(frozenset([1, 2, 3]))
    assert digest((1, 2)) == digest([1, 2])  # msgpack and JSON both decode a tuple as a list


def test_canonical_is_total():
    class Odd:
        __slots__ = ("x",)

        def __init__(self) -> None:
            self.x = 1

    loop: list = []
    loop.append(loop)
    for value in (Odd(), loop, object, float("nan"), 2**80, ValueError("boom")):
        json.dumps(canonical(value))
        assert digest(value).startswith("sha256:")


_plain_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(alphabet="lc_sendabc"))
_plain_values = st.recursive(
    _plain_leaf,
    lambda inner: st.dictionaries(st.text(alphabet="lc_sendabc", max_size=3) | st.integers(), inner, max_size=4)
    | st.lists(inner, max_size=3),
    max_leaves=10,
)


@given(_plain_values)
def test_the_plain_fields_shortcut_is_canonical(value):
    # The diff's shortcut for ids, steps and versions skips canonical's walk: same form exactly.
    from dualsaver.checker._diff import _plain

    assert json.dumps(_plain(value)) == json.dumps(canonical(value))
