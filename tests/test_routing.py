"""Routing seen from outside: which store answers reads and which receive writes, per phase."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dualsaver import DualSaver, InvalidPhaseError, Phase, TransitionError
from dualsaver.control.phase import check_transition
from dualsaver.control.sources import resolve_phase
from tests.faulty import Faulty
from tests.savers import put_marker, sync_saver

# Written out by hand from design.md, not derived from dualsaver.saver.routing: the test must be
# able to disagree with the code.
EXPECTED = {
    Phase.SHADOW_WRITE: {"reads": "old", "writes": ["old", "new"]},
    Phase.BACKFILL: {"reads": "old", "writes": ["old", "new"]},
    Phase.READ_SWITCH: {"reads": "new", "writes": ["new", "old"]},
    Phase.DECOMMISSION: {"reads": "new", "writes": ["new"]},
}


@pytest.fixture
def stores(tmp_path):
    with sync_saver("sqlite", tmp=tmp_path) as old, sync_saver("sqlite", tmp=tmp_path) as new:
        yield Faulty(old), Faulty(new)


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_writes_reach_the_phase_stores_primary_first(tmp_path, stores, phase):
    old, new = stores
    order: list[str] = []
    old._gate = lambda name, _o=old._gate: (order.append("old"), _o(name))[1]
    new._gate = lambda name, _n=new._gate: (order.append("new"), _n(name))[1]
    saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite", write_behind=False)
    cid = put_marker(saver, "t", "x")
    saver.put_writes({"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": cid}}, [("c", 1)], "task")
    assert order == EXPECTED[phase]["writes"] * 2
    for role, store in (("old", old), ("new", new)):
        held = store.get_tuple({"configurable": {"thread_id": "t"}})
        assert (held is not None) == (role in EXPECTED[phase]["writes"])
        if held is not None:
            assert held.pending_writes == [("task", "c", 1)]


def test_write_behind_in_shadow_write_keeps_primary_first_and_call_order(tmp_path, stores):
    old, new = stores
    order: list[tuple[str, str]] = []
    old._gate = lambda name, _o=old._gate: (order.append(("old", name)), _o(name))[1]
    new._gate = lambda name, _n=new._gate: (order.append(("new", name)), _n(name))[1]
    saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", write_behind=True)
    ops = []
    for n in range(20):
        cid = put_marker(saver, f"t{n % 3}", str(n))
        saver.put_writes({"configurable": {"thread_id": f"t{n % 3}", "checkpoint_ns": "", "checkpoint_id": cid}}, [("c", n)], "task")
        ops += ["put", "put_writes"]
    saver.delete_thread("t0")
    ops.append("delete_thread")
    assert saver.flush(timeout=30)
    old_seq = [name for store, name in order if store == "old"]
    new_seq = [name for store, name in order if store == "new"]
    assert old_seq == new_seq == ops  # the secondary receives every write, in call order
    old_at = [i for i, (store, _) in enumerate(order) if store == "old"]
    new_at = [i for i, (store, _) in enumerate(order) if store == "new"]
    assert all(o < n for o, n in zip(old_at, new_at))  # each write: primary before secondary
    assert new.inner.get_tuple({"configurable": {"thread_id": "t0"}}) is None
    assert new.inner.get_tuple({"configurable": {"thread_id": "t1"}}).checkpoint["channel_values"]["marker"] == "19"


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_reads_come_from_the_phase_read_store(tmp_path, stores, phase):
    old, new = stores
    put_marker(old.inner, "t", "from-old")
    put_marker(new.inner, "t", "from-new")
    saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite")
    got = saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert got.checkpoint["channel_values"]["marker"] == f"from-{EXPECTED[phase]['reads']}"
    listed = [t.checkpoint["channel_values"]["marker"] for t in saver.list({"configurable": {"thread_id": "t"}})]
    assert listed == [f"from-{EXPECTED[phase]['reads']}"]


def test_read_switch_miss_falls_back_to_old_and_copies_the_thread(tmp_path, stores):
    old, new = stores
    cid = put_marker(old.inner, "only-old", "history")
    saver = DualSaver(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
    got = saver.get_tuple({"configurable": {"thread_id": "only-old"}})
    assert got.checkpoint["id"] == cid
    copied = new.inner.get_tuple({"configurable": {"thread_id": "only-old"}})
    assert copied is not None and copied.checkpoint["id"] == cid


def test_decommission_never_touches_old(tmp_path, stores):
    old, new = stores
    put_marker(old.inner, "gone", "old-only")
    saver = DualSaver(old, new, Phase.DECOMMISSION, journal=tmp_path / "j.sqlite")
    assert saver.get_tuple({"configurable": {"thread_id": "gone"}}) is None
    saver.delete_thread("gone")
    assert old.calls == []


def test_phase_comes_from_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("DUALSAVER_PHASE", raising=False)
    assert resolve_phase(None) == (Phase.SHADOW_WRITE, "default")
    monkeypatch.setenv("DUALSAVER_PHASE", "read_switch")
    assert resolve_phase(None)[0] is Phase.READ_SWITCH
    assert resolve_phase("backfill")[0] is Phase.BACKFILL
    monkeypatch.setenv("DUALSAVER_PHASE", "sideways")
    with pytest.raises(InvalidPhaseError) as err:
        resolve_phase(None)
    assert "'sideways'" in str(err.value) and "shadow-write, backfill, read-switch, decommission" in str(err.value)


def test_unknown_phase_fails_at_construction(tmp_path, stores):
    with pytest.raises(InvalidPhaseError, match="'readswitch'.*valid phases are"):
        DualSaver(*stores, phase="readswitch", journal=tmp_path / "j.sqlite")


def test_transitions_forward_one_step_back_while_old_is_written():
    check_transition(Phase.SHADOW_WRITE, Phase.BACKFILL)
    check_transition(Phase.READ_SWITCH, Phase.SHADOW_WRITE)
    with pytest.raises(TransitionError, match="one step at a time"):
        check_transition(Phase.SHADOW_WRITE, Phase.READ_SWITCH)
    with pytest.raises(TransitionError, match="reverse backfill"):
        check_transition(Phase.DECOMMISSION, Phase.READ_SWITCH)
    check_transition(Phase.DECOMMISSION, Phase.READ_SWITCH, reverse_backfill_done=True)


@given(
    phase=st.sampled_from(list(Phase)),
    canary=st.one_of(st.none(), st.floats(0, 100)),
    thread=st.sampled_from(["a", "b", "c", "d"]),
    stale_old=st.sets(st.sampled_from(["a", "b", "c", "d"])),
    stale_new=st.sets(st.sampled_from(["a", "b", "c", "d"])),
)
def test_no_thread_is_read_from_the_store_that_alone_missed_a_write_of_it(phase, canary, thread, stale_old, stale_new):
    """In backfill and read-switch (both stores written, the caller waiting for each: the
    rolling move between them has replicas of both writing at once), whatever the canary,
    a thread one store missed a write of and the other did not is read from the other; in
    shadow-write (new's copies queued) and decommission (new alone) the stale sets change
    nothing."""
    from dualsaver.saver._plans import Context
    from dualsaver.saver.routing import route_for

    ctx = Context(route_for(phase), canary_percent=canary, stale_in_old=stale_old, stale_in_new=stale_new)
    read, fallback = ctx.reads(thread)
    if phase in (Phase.SHADOW_WRITE, Phase.DECOMMISSION):
        assert (read, fallback) == Context(route_for(phase)).reads(thread)
        assert read == EXPECTED[phase]["reads"]
    elif thread in stale_new and thread not in stale_old:
        assert (read, fallback) == ("old", None)
    elif thread in stale_old and thread not in stale_new:
        assert read == "new"
        assert fallback is None or phase is Phase.READ_SWITCH  # read-switch's own route: new, old behind it
    elif phase is Phase.BACKFILL:
        assert (read, fallback) == (EXPECTED[phase]["reads"], None)
