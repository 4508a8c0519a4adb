"""`dualsaver.heap.fewer_collections`: the collector's thresholds raised while any job runs
and put back exactly when the last one ends, however the jobs of one process overlap."""

from __future__ import annotations

import contextlib
import gc

from hypothesis import given
from hypothesis import strategies as st

from dualsaver.checker import check
from dualsaver.heap import YOUNG, fewer_collections
from dualsaver.stores import open_saver
from tests import check_support as cs


@given(st.permutations(range(4)), st.integers(1, 5000))
def test_overlapping_jobs_put_back_the_thresholds_the_first_found(exit_order, young):
    before = gc.get_threshold()
    gc.set_threshold(young, 11, 12)
    try:
        with contextlib.ExitStack() as outer:
            jobs = [contextlib.ExitStack() for _ in range(4)]
            for job in jobs:
                outer.callback(job.close)  # whatever the order below, all end
                job.enter_context(fewer_collections())
                assert gc.get_threshold() == (max(young, YOUNG), 11, 12)
            for n, i in enumerate(exit_order):
                jobs[i].close()
                still = n < len(jobs) - 1
                assert gc.get_threshold() == ((max(young, YOUNG), 11, 12) if still else (young, 11, 12))
    finally:
        gc.set_threshold(*before)


def test_a_check_holds_the_collector_back_while_it_runs_and_only_then(tmp_path):
    seen = []
    before = gc.get_threshold()
    with open_saver(f"sqlite:///{tmp_path / 'old.sqlite'}") as old, open_saver(f"sqlite:///{tmp_path / 'new.sqlite'}") as new:
        cs.populate(old, ["t"])
        cs.clone(old, new)
        report = check(old, new, progress=lambda p: seen.append(gc.get_threshold()[0]))
    assert report.clean and seen and all(s == max(before[0], YOUNG) for s in seen)
    assert gc.get_threshold() == before
