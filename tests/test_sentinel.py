"""Redis Sentinel: a real master, a replica and three sentinels (redis-server in sentinel
mode), for dualsaver's Redis saver and for the official LangGraph one.

- Failover: shadow-write traffic runs while the master is killed. The application never sees
  an error (the new store is the secondary: its misses are journaled), the same savers write
  to the promoted replica once the sentinels name it, repair from the journal brings the
  stores back to a clean check, and the Sentinel store then serves as primary.
- ``wait=1``: a write returns only once the replica holds it. With the replica frozen, a put
  is refused (`NotReplicated`: not acknowledged); under traffic with the master killed, every
  acknowledged put is on the promoted replica. Without ``wait`` an acknowledged put may be
  lost in the failover (asynchronous replication): that is the trade-off the README states.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dualsaver import DualSaver, Journal, NotReplicated, Phase, check, repair, repairs_from_journal
from dualsaver.embedded import EmbeddedSentinel
from dualsaver.stores import open_saver, store_identity
from tests.graphs import build_agent, config, run_turn
from tests.ops_support import eventually
from tests.savers import put_marker

pytestmark = pytest.mark.slow


def _until(what: str, ready: Any, timeout: float = 60.0) -> None:
    """`eventually`, where the store may still raise while it fails over."""

    def quietly() -> Any:
        try:
            return ready()
        except Exception:
            return False

    eventually(quietly, what, timeout=timeout, every=0.1)


class Traffic:
    """Puts on a few threads through each saver, in a loop, until stopped; what the caller
    saw acknowledged and what it saw raised."""

    def __init__(self, savers: list[Any], prefix: str) -> None:
        self.savers, self.prefix = savers, prefix
        self.acknowledged: list[list[tuple[str, str]]] = [[] for _ in savers]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for i, saver in enumerate(self.savers):
                thread_id = f"{self.prefix}-{n % 5}"
                try:
                    self.acknowledged[i].append((thread_id, put_marker(saver, thread_id, f"m{n}")))
                except Exception as exc:
                    self.errors.append(exc)
            n += 1
            time.sleep(0.01)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_dualsaver_keeps_serving_through_a_sentinel_failover(tmp_path: Path) -> None:
    with EmbeddedSentinel(password="sentinel pw", stack=True) as group, \
            open_saver(f"sqlite:///{tmp_path / 'a.sqlite'}") as old_a, open_saver(group.url) as plain, \
            open_saver(f"sqlite:///{tmp_path / 'b.sqlite'}") as old_b, open_saver(group.langgraph_url) as official:
        pairs = [(old_a, plain, tmp_path / "a.journal"), (old_b, official, tmp_path / "b.journal")]
        savers = [DualSaver(old, new, Phase.SHADOW_WRITE, journal=j, secondary_timeout=2) for old, new, j in pairs]
        named = store_identity(plain)  # what a backfill's progress is kept under: the sentinels and the service
        assert named.startswith("redis+sentinel://") and "sentinel pw" not in named
        with Traffic(savers, "live") as traffic:
            _until("traffic", lambda: all(len(a) > 5 for a in traffic.acknowledged))
            before = [len(a) for a in traffic.acknowledged]
            dead = group.kill_master()
            promoted = group.wait_for_failover(dead)
            assert promoted.port != dead.port
            # The same savers reach the promoted master on their own (the sentinels name it).
            for _, new, _ in pairs:
                _until("writes on the new master", lambda new=new: put_marker(new, "probe", "after"))
            marks = [len(a) for a in traffic.acknowledged]
            _until("traffic after the failover", lambda: all(len(a) > m + 5 for a, m in zip(traffic.acknowledged, marks)))
        assert traffic.errors == []  # the application never saw the failover
        with open_saver(group.url) as again:  # opened again after the failover: the same name, so a backfill resumes
            assert store_identity(again) == store_identity(plain) == named
        assert all(len(a) > b + 10 for a, b in zip(traffic.acknowledged, before))
        for saver, (old, new, journal_path) in zip(savers, pairs):
            assert saver.flush(timeout=60)
            new.delete_thread("probe")  # the test's own probe, not the application's
            journal = Journal(journal_path)
            try:
                entries = list(journal.pending())
                assert entries, "the writes the failover refused are journaled"
                assert repair(old, new, repairs=repairs_from_journal(entries)).ok
            finally:
                journal.close()
            assert check(old, new).clean
            # Reads and writes now go to the Sentinel store first, on the promoted master.
            saver.phase = Phase.BACKFILL
            saver.phase = Phase.READ_SWITCH
            state = run_turn(build_agent(saver), "after-failover", "omega")
            assert state["log"][-1] == "finish" and new.get_tuple(config("after-failover")) is not None
            saver.close()


@pytest.mark.parametrize("flavour", ["plain", "official"])
def test_with_wait_nothing_acknowledged_is_lost(flavour: str) -> None:
    # Two replicas: after the failover the promoted one still has a replica to WAIT for
    # (with one, wait=1 would refuse every write until another replica joins).
    with EmbeddedSentinel(password="pw", replicas=2, stack=flavour == "official") as group:
        base = group.url if flavour == "plain" else group.langgraph_url
        with open_saver(base + "?wait=1&wait_timeout=0.5") as saver:
            put_marker(saver, "warm", "up")
            replicas = [n for n in group.data_nodes if n is not group.master()]
            for replica in replicas:
                replica.pause()  # no replica acknowledges: nothing can be acknowledged
            try:
                with pytest.raises(NotReplicated, match="0 of 1 replica"):
                    put_marker(saver, "frozen", "refused")
            finally:
                for replica in replicas:
                    replica.resume()
            _until("the replica back in sync", lambda: put_marker(saver, "warm", "again"))
            with Traffic([saver], "acked") as traffic:
                _until("traffic", lambda: len(traffic.acknowledged[0]) > 20)
                dead = group.kill_master()  # mid-traffic, without warning
                group.wait_for_failover(dead)
                _until("writes on the new master", lambda: put_marker(saver, "probe", "after"))
            acknowledged = traffic.acknowledged[0]  # the puts that returned; the rest raised
            assert len(acknowledged) > 20
            for thread_id, checkpoint_id in acknowledged:
                cfg = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
                assert saver.get_tuple(cfg) is not None, f"acknowledged {thread_id}/{checkpoint_id} was lost"
