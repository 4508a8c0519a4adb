"""A checkpoint's writes are kept in LangGraph's own order: `WRITE_ORDER` (built in C, for
the copy's hot path) is exactly `writes_sort_key` of a write's task path, task id and idx."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from langgraph.checkpoint.base import writes_sort_key

from dualsaver.stores.native import NOT_DECODED, WRITE_ORDER, StoredWrite, in_write_order

writes = st.builds(
    StoredWrite, task_id=st.text(max_size=4), task_path=st.text(max_size=6), idx=st.integers(-5, 2**40),
    channel=st.text(max_size=3), value=st.just(NOT_DECODED),
)


@given(st.lists(writes, max_size=8))
def test_writes_are_kept_in_langgraphs_order(some) -> None:
    for w in some:
        assert WRITE_ORDER(w) == writes_sort_key(w.task_path, w.task_id, w.idx)
    assert in_write_order(some) == tuple(sorted(some, key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx)))
