"""The backfill's fast paths give what the slow ones give (hypothesis). A checkpoint split
into its channel values' stored bytes (`dualsaver.stores._msgpack_split`) is what decoding it and
encoding each value again gives: the same inline values, the same blob bytes, the same
DeltaChannel snapshot markers, over the kinds of values LangGraph keeps in channels; stored
values joined into one document (`dualsaver.stores._msgpack_join`) decode to the checkpoint;
and metadata is kept as it is only where put would store it unchanged."""

from __future__ import annotations

import enum
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.types import Send

from dualsaver.stores._postgres import split_channel_values
from dualsaver.stores._msgpack_join import joined
from dualsaver.stores._msgpack_split import split_checkpoint
from dualsaver.stores.native import StoredValue
from dualsaver.stores.serde import serde_key

SERDE = JsonPlusSerializer()


class Color(str, enum.Enum):  # a str subclass: PostgreSQL's put keeps it inline
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


primitives = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), st.text(max_size=20),
)
leaves = st.one_of(
    primitives,
    st.binary(max_size=20),
    st.sampled_from([Color.RED, Size.BIG]),
    st.datetimes(timezones=st.none()),
    st.dates(), st.times(), st.timedeltas(), st.decimals(allow_nan=False), st.uuids(),
    st.frozensets(st.integers(0, 9), max_size=3), st.sets(st.text(max_size=3), max_size=3),
    st.builds(Path, st.text(alphabet="ab/", max_size=5)), st.ip_addresses(),
    st.builds(HumanMessage, content=st.text(max_size=20)),
    st.builds(AIMessage, content=st.text(max_size=20)),
    st.builds(Send, st.sampled_from(["node", "other"]), st.dictionaries(st.text(max_size=5), primitives, max_size=3)),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=10,
)
channel_values = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(values, st.builds(_DeltaSnapshot, st.lists(st.text(max_size=5), max_size=3))),
    max_size=6,
)


def _blobs(blobs: dict) -> dict:
    return {k: v.typed if isinstance(v, StoredValue) else SERDE.dumps_typed(v) for k, v in blobs.items()}


@given(channel_values, st.sampled_from(["absent", "empty"]))
@example({"0": {"000", "\U000ebdbf"}}, "absent")  # a set whose members a decoded copy iterates in another order
def test_split_bytes_are_what_encoding_each_value_writes(values_, pending_sends) -> None:
    checkpoint = {**empty_checkpoint(), "channel_values": values_}
    if pending_sends == "absent":  # as graphs write v4 checkpoints; empty_checkpoint() has []
        del checkpoint["pending_sends"]
    data = SERDE.dumps_typed(checkpoint)[1]
    split = split_checkpoint(data, SERDE)
    # The split path was taken: whatever goes to a blob passes through as bytes (a lone enum
    # is decoded for real, and stays decoded only where it rebuilds a str or an int).
    containers = [v for v in values_.values() if not (v is None or isinstance(v, (str, int, float, bool, bytes)))]
    stored = [v for v in split["channel_values"].values() if isinstance(v, StoredValue)]
    assert len(stored) == len(containers)
    decoded = SERDE.loads_typed(("msgpack", data))
    assert {k: v for k, v in split.items() if k != "channel_values"} == {
        k: v for k, v in decoded.items() if k != "channel_values"
    }
    inline, blobs = split_channel_values(split["channel_values"])
    inline_full, _ = split_channel_values(decoded["channel_values"])
    assert inline == inline_full
    # against encoding the values passed (a set's members come in the order it iterates, which a
    # set rebuilt by decoding need not keep)
    _, blobs_full = split_channel_values(values_)
    assert _blobs(blobs) == _blobs(blobs_full)
    for k, v in blobs.items():  # and the bytes decode to the value itself
        assert SERDE.loads_typed(_blobs({k: v})[k]) == decoded["channel_values"][k]


@given(channel_values, st.sampled_from(["absent", "empty"]), st.sampled_from(["plain", "object"]))
def test_a_document_joined_from_stored_values_is_what_encoding_the_checkpoint_writes(
    values_, pending_sends, serializer
) -> None:
    """PostgreSQL's stored values (its blobs, as `put` splits and writes them) joined into one
    document for SQLite decode to what encoding the whole checkpoint gives; a serializer that is
    not the plain one (`serde_key` not jsonplus) takes the decoded path."""
    checkpoint = {**empty_checkpoint(), "channel_values": values_}
    if pending_sends == "absent":
        del checkpoint["pending_sends"]
    inline, blobs = split_channel_values(values_)
    stored = {**inline, **{k: StoredValue(SERDE.dumps_typed(v), snapshot=isinstance(v, _DeltaSnapshot))
                           for k, v in blobs.items()}}
    key = serde_key(SERDE) if serializer == "plain" else ("object", 1)
    plain = all(v is None or type(v) in (str, bool, float) or (type(v) is int and -(2**63) <= v < 2**64)
                for v in inline.values())
    # the plain serializer over plain inline values: nothing decoded (the serializer given cannot)
    tag, data = joined({**checkpoint, "channel_values": stored}, NoDecoding() if key[0] == "jsonplus" and plain
                       else SERDE, key)
    assert tag == "msgpack"
    assert SERDE.loads_typed((tag, data)) == SERDE.loads_typed(SERDE.dumps_typed(checkpoint))


class NoDecoding:
    """The plain serializer, refusing to decode."""

    def dumps_typed(self, value):
        return SERDE.dumps_typed(value)

    def loads_typed(self, typed):
        raise AssertionError("decoded")


def test_what_cannot_be_split_is_decoded_or_refused() -> None:
    sends = {**empty_checkpoint(), "pending_sends": [Send("node", {"x": 1})], "channel_values": {"a": [1]}}
    data = SERDE.dumps_typed(sends)[1]
    assert split_checkpoint(data, SERDE) == SERDE.loads_typed(("msgpack", data))  # a v1 checkpoint: all decoded
    with pytest.raises(ValueError):
        split_checkpoint(data[:-3], SERDE)  # truncated
    import ormsgpack

    with pytest.raises(ValueError):  # the reader then decodes it whole, whose failure names the extension
        split_checkpoint(ormsgpack.packb({"channel_values": {"a": ormsgpack.Ext(42, b"x")}}), SERDE)


@given(st.dictionaries(
    st.sampled_from(["source", "step", "writes", "parents", "run_id", "note"]),
    st.one_of(
        primitives, st.text(alphabet="ab\x00", max_size=5), st.sampled_from([Color.RED]),
        st.dictionaries(st.text(max_size=3), primitives),
    ),
))
def test_metadata_kept_as_it_is_only_when_put_would_store_it_so(metadata) -> None:
    from langgraph.checkpoint.base import get_serializable_checkpoint_metadata

    from dualsaver.errors import LossyValue
    from dualsaver.stores._postgres import serializable_metadata
    from dualsaver.stores.faithful import NUL

    expected = get_serializable_checkpoint_metadata({}, dict(metadata))
    got = serializable_metadata(metadata, allowed={NUL})  # a NUL the saver strips, accepted: as put stores it
    assert got == expected and [type(v) for v in got.values()] == [type(v) for v in expected.values()]
    if any(isinstance(v, str) and "\x00" in v for v in metadata.values()):  # not accepted: refused, never stripped
        with pytest.raises(LossyValue):
            serializable_metadata(metadata)
    else:
        assert serializable_metadata(metadata) == expected
