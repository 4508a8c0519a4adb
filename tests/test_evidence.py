"""The read-switch guard's reading of recorded outcomes: shards recorded in any order, by any
number of jobs, make a whole run once all are in, and not before (hypothesis); a clean check
of the long-term store's items counts only when it compared the stores their backfill copied
between."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dualsaver.control.evidence import (
    LocalStatusFile, evidence, left_shadow_write, record_backfill, record_check, record_store_backfill,
    record_store_check, scope,
)
from dualsaver.control.phase import Phase, TransitionError, guard_transition
from dualsaver.control.settings import Settings

PAIR = {"old": "a", "new": "b"}


def _backfill(finished_at: float, failed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(finished_at=finished_at, started_at=finished_at - 1, failed=failed, threads=1,
                           threads_resumed=0, checkpoints=1, writes=0, skipped=0, unreadable=0, exact=True,
                           elapsed_s=1.0, dry_run=False)


def _report(clean: bool = True) -> SimpleNamespace:
    return SimpleNamespace(clean=clean, divergences=[] if clean else [object()], summary={"duration_seconds": 0})


@given(
    count=st.integers(min_value=1, max_value=5),
    order=st.randoms(use_true_random=False),
    missing=st.booleans(),
    failed_shard=st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
)
def test_a_sharded_backfill_counts_as_whole_once_every_shard_is_in(tmp_path_factory, count, order, missing, failed_shard):
    settings = Settings(status_file=str(tmp_path_factory.mktemp("status") / "status.json"))
    shards = list(range(count))
    order.shuffle(shards)
    recorded = shards[:-1] if missing else shards
    for at, i in enumerate(recorded, start=1):
        failed = 1 if i == failed_shard else 0
        record_backfill(_backfill(1000.0 + at, failed), scope=scope((i, count)), pair=PAIR, settings=settings)
    store = LocalStatusFile(settings.status_file)
    e = evidence(store, entered_at=None)
    if not recorded:
        assert e.backfill_at is None
        return
    whole = not missing
    assert e.backfill_full is whole
    assert e.backfill_at == 1000.0 + len(recorded)  # the newest shard's end
    if whole:
        assert e.backfill_ok is (failed_shard is None or failed_shard >= count)

    # A clean check after it counts only when it too is whole.
    for i in range(count):
        record_check(_report(), scope=scope((i, count)), pair=PAIR, settings=settings)
        e = evidence(store, entered_at=None)
        assert e.check_full is (i == count - 1)
        assert (e.check_shards is None) is (i == count - 1)
    assert e.check_clean and not e.check_other_pair


def test_a_clean_item_check_of_other_stores_than_the_item_backfills_does_not_let_reads_switch(tmp_path):
    settings = Settings(status_file=str(tmp_path / "status.json"))
    store = LocalStatusFile(settings.status_file)
    record_backfill(_backfill(1000.0), pair=PAIR, settings=settings)
    record_check(_report(), pair=PAIR, settings=settings)
    items = SimpleNamespace(bad=0, items=1, skipped=0, exact=True, vectors={}, dry_run=False)
    record_store_backfill(items, pair={"old": "items-a", "new": "items-b"}, settings=settings)
    record_store_check(_report(), pair={"old": "items-a", "new": "items-c"}, settings=settings)  # a typo
    e = evidence(store, entered_at=None, store_pair=True)
    assert e.store_check_other_pair and e.store_check_at is None
    with pytest.raises(TransitionError, match="compared the stores its backfill copied between"):
        guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, e)

    record_store_check(_report(), pair={"old": "items-a", "new": "items-b"}, settings=settings)
    e = evidence(store, entered_at=None, store_pair=True)
    assert e.store_check_clean and not e.store_check_other_pair
    guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, e)  # allowed


def test_the_fleet_left_shadow_write_at_the_newest_move_out_of_it():
    """A record never set stood at shadow-write (the default); later moves elsewhere do not count."""
    def moves(*steps: tuple[str | None, str, float]) -> list[SimpleNamespace]:
        return [SimpleNamespace(from_phase=a, to_phase=b, changed_at=at) for a, b, at in steps]

    assert left_shadow_write(moves()) is None
    assert left_shadow_write(moves((None, "shadow-write", 1.0))) is None  # still writing behind
    assert left_shadow_write(moves((None, "backfill", 1.0))) == 1.0
    assert left_shadow_write(moves((None, "shadow-write", 1.0), ("shadow-write", "backfill", 2.0),
                                   ("backfill", "read-switch", 3.0))) == 2.0
    assert left_shadow_write(moves(("shadow-write", "backfill", 2.0), ("backfill", "shadow-write", 3.0),
                                   ("shadow-write", "backfill", 4.0))) == 4.0


def test_one_shard_started_while_a_replica_wrote_behind_keeps_the_whole_check_from_counting(tmp_path):
    settings = Settings(status_file=str(tmp_path / "status.json"))
    store = LocalStatusFile(settings.status_file)
    record_backfill(_backfill(1000.0), pair=PAIR, settings=settings)
    behind = "1 live replica(s) still reported shadow-write (r1)"
    for i, why in enumerate([None, behind, None]):
        record_check(_report(), scope=scope((i, 3)), pair=PAIR, settings=settings, writing_behind=why)
    e = evidence(store, entered_at=None)
    assert e.check_full and e.check_clean and e.check_writing_behind == behind
    with pytest.raises(TransitionError, match=r"when the last check started, 1 live replica\(s\) still reported"):
        guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, e)
    record_check(_report(), scope=scope((1, 3)), pair=PAIR, settings=settings)  # that shard again, later
    e = evidence(store, entered_at=None)
    assert e.check_writing_behind is None
    guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, e)
