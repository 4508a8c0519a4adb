"""No false positives under live traffic: writes landing while the check runs are not reported,
and a real divergence is still reported beside them."""

from __future__ import annotations

import threading
import time
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver
from psycopg import Connection
from psycopg.rows import dict_row

from dualsaver.checker import check
from dualsaver.saver import DualSaver
from dualsaver.stores import native_for, open_saver
from tests import check_support as cs


class SlowPostgresSaver(PostgresSaver):
    """A real PostgreSQL store whose writes start a little late, as a far-away secondary's
    would: it widens the window in which the primary holds a write the secondary lacks."""

    delay = 0.02

    def put(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return super().put(*args, **kwargs)

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(self.delay)
        return super().put_writes(*args, **kwargs)


def test_check_beside_live_shadow_writes_reports_only_the_real_divergence(
    pg_url, sqlite_path, tmp_path
):
    conn = Connection.connect(pg_url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    new = SlowPostgresSaver(conn)
    new.setup()
    with conn, open_saver(f"sqlite:///{sqlite_path}") as old:
        cs.populate(old, ["quiet"])
        cs.clone(old, new)
        # a real divergence on a thread nobody writes to
        dropped = cs.items(new, "quiet")[2]
        cs.rewrite_thread(new, "quiet", lambda rows: cs.drop(rows, 2))
        real = {("missing_in_new", "quiet", dropped.checkpoint_ns, dropped.checkpoint_id)}

        # the check runs from the backfill phase on, where the secondary is written before
        # each call returns (in shadow-write it lags by the write-behind queue)
        dual = DualSaver(old, new, "backfill", journal=tmp_path / "journal.sqlite")
        app = cs.build_graph(dual)
        stop = threading.Event()
        turns = []

        def traffic() -> None:
            n = 0
            while not stop.is_set():
                cs.run_turn(app, f"live-{n % 3}", f"turn{n}")
                turns.append(n)
                n += 1

        writer = threading.Thread(target=traffic, daemon=True)
        writer.start()
        reports = []
        try:
            while len(reports) < 25:
                reports.append(check(old, new))
                cleared = sum(r.summary["recheck"]["cleared_threads"] for r in reports)
                if cleared >= 2 and len(reports) >= 3:
                    break
        finally:
            stop.set()
            writer.join(timeout=60)
        assert not writer.is_alive()
        assert turns, "the traffic never completed a turn"
        for report in reports:
            assert {d.identity for d in report.divergences} == real, report.to_json()
        # the traffic really overlapped the checks: suspects were found and cleared
        assert sum(r.summary["recheck"]["cleared_threads"] for r in reports) >= 1
        assert dual.secondary_failures.total() == 0
        # and once the traffic has stopped, the stores agree but for the planted row
        assert {d.identity for d in check(old, new).divergences} == real


class AfterRead:
    """The secondary's REAL native store; after the check reads `thread_id` from it, runs
    `then` once (used to land a primary write exactly between the two reads)."""

    def __init__(self, store: Any, thread_id: str, then: Any) -> None:
        self.store, self.thread_id, self.then = store, thread_id, then
        self.exact = store.exact

    def thread_ids(self):
        return self.store.thread_ids()

    def read_thread(self, thread_id: str):
        yield from self.store.read_thread(thread_id)
        if thread_id == self.thread_id and self.then is not None:
            then, self.then = self.then, None
            then()

    def checkpoint_keys(self, thread_id: str):
        return self.store.checkpoint_keys(thread_id)

    def write_checkpoints(self, items):
        return self.store.write_checkpoints(items)


def _in_flight_check(old: Any, new: Any, recheck: bool):
    rows = cs.items(old, "t-a")
    late = cs.extra_checkpoint(rows[-1])  # a checkpoint the graph is writing right now
    old_native, new_native = native_for(old), native_for(new)
    landed = []

    def secondary_write_completes(progress) -> None:
        if progress.phase == "scan" and progress.threads == 1 and not landed:
            landed.append(new_native.write_checkpoints([late]))

    report = check(
        old_native,
        AfterRead(new_native, "t-a", lambda: old_native.write_checkpoints([late])),
        recheck=recheck,
        progress=secondary_write_completes,
        backoff=(0.0,),
    )
    return report, late


def test_a_write_landing_between_the_two_reads_is_cleared_by_the_recheck(
    sqlite_path, tmp_path
):
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(
        f"sqlite:///{tmp_path / 'new.sqlite'}"
    ) as new:
        cs.populate(old, ["t-a", "t-b"])
        cs.clone(old, new)
        report, late = _in_flight_check(old, new, recheck=True)
        assert report.clean, report.to_json()
        assert report.summary["recheck"]["cleared_threads"] == 1
        assert late.checkpoint_id in {k[1] for k in native_for(new).checkpoint_keys("t-a")}

    # the same moment without the re-check: the in-flight write is a (false) divergence,
    # which is what the re-check exists to remove
    with open_saver(f"sqlite:///{tmp_path / 'o2.sqlite'}") as old, open_saver(
        f"sqlite:///{tmp_path / 'n2.sqlite'}"
    ) as new:
        cs.populate(old, ["t-a", "t-b"])
        cs.clone(old, new)
        report, late = _in_flight_check(old, new, recheck=False)
        assert [d.identity for d in report.divergences] == [
            ("missing_in_new", "t-a", late.checkpoint_ns, late.checkpoint_id)
        ]
