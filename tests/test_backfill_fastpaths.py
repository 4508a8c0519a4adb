"""The PostgreSQL writer's shortcuts give what its careful paths give (hypothesis): the walk that
looks for NaN and Infinity finds one exactly where `refuse` does, and metadata kept as orjson
encoded it is the value `put` stores, refused where put would change it."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dualsaver.errors import LossyValue
from dualsaver.stores._postgres import JSONB_VERSION, _all_finite, jsonb_wire, metadata_wire, serializable_metadata
from dualsaver.stores.faithful import NON_FINITE, NUL, first_path, is_non_finite

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(alphabet="ab\x00", max_size=4),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "writes", "c"]), inner, max_size=4),
    ),
    max_leaves=12,
)
metadata = st.dictionaries(st.sampled_from(["source", "step", "writes", "parents", "run_id", "note"]), json_values)


def _value(wire: bytes) -> object:
    """What PostgreSQL stores from a JSONB value the writer built (NaN never reaches it)."""
    assert wire[:1] == JSONB_VERSION
    return orjson.loads(wire[1:])


@given(json_values)
def test_the_fast_walk_finds_a_non_finite_float_where_refuse_does(value) -> None:
    assert _all_finite(value) == (first_path(value, is_non_finite) is None)


def test_the_fast_walk_looks_inside_subclasses() -> None:
    class Floats(list):
        pass

    assert not _all_finite({"a": Floats([1.0, math.inf])})
    assert _all_finite({"a": Floats([1.0, None])})


@given(metadata, st.sampled_from([(), (NUL,), (NON_FINITE,), (NUL, NON_FINITE)]))
def test_metadata_kept_as_encoded_is_what_put_stores(meta, allowed) -> None:
    try:
        expected = _value(jsonb_wire(serializable_metadata(meta, allowed), "metadata", allowed))
    except LossyValue:
        with pytest.raises(LossyValue):
            metadata_wire(meta, allowed)
        return
    assert _value(metadata_wire(meta, allowed)) == expected


@given(st.dictionaries(st.sampled_from(["a", "null", "c"]), st.one_of(st.none(), st.floats(), st.just("null"))),
       json_values)
def test_nulls_counted_against_known_nones_never_let_a_non_finite_through(inline, rest) -> None:
    value = {"channel_values": inline, "rest": rest}
    nones = list(inline.values()).count(None)
    if _all_finite(value):
        assert _value(jsonb_wire(value, "checkpoint", (), nones)) == orjson.loads(orjson.dumps(value))
    else:
        with pytest.raises(LossyValue):
            jsonb_wire(value, "checkpoint", (), nones)
