"""Throttling: a rate cap holds over a run (a lower bound on its time, which a slow machine
cannot break), --max-load backs off while the target is slowed by a lock on its table, and
the limits follow the throttle file while a job runs."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dualsaver import backfill, check
from dualsaver.control.record import open_phase_record
from dualsaver.control.throttle import BACKOFF, FleetThrottle, Limits, Relay, Throttle, ThrottleFile
from dualsaver.embedded import EmbeddedRedis
from dualsaver.processes import start_context
from dualsaver.stores import native_for, open_saver

from .backfill_support import run_threads
from .ops_support import eventually, run_cli


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(
    rate=st.floats(1, 1000),
    units=st.lists(st.tuples(st.integers(1, 300), st.floats(0, 2)), min_size=1, max_size=30),
)
def test_a_rate_cap_bounds_the_run_from_below(rate: float, units: list[tuple[int, float]]) -> None:
    """However long each unit of work takes, work plus waits lasts at least N / rate."""
    clock = FakeClock()
    throttle = Throttle(Limits(max_rate=rate), clock=clock)
    start = clock.now
    for checkpoints, work in units:
        clock.now += work
        clock.now += throttle.after(checkpoints)
    total = sum(n for n, _ in units)
    assert clock.now - start >= total / rate - 1e-6
    assert throttle.throttled_s >= 0


def test_slow_store_calls_make_the_job_back_off_until_the_window_empties() -> None:
    clock = FakeClock()
    throttle = Throttle(Limits(max_load_ms=200), window=5.0, clock=clock)
    throttle.observe(0.05)
    assert throttle.after(100) == 0 and throttle.reason is None
    for _ in range(3):
        throttle.observe(0.9)  # a lock on the target's table
    assert throttle.after(100) == BACKOFF
    assert throttle.reason is not None and "p95" in throttle.reason and "> 200 ms" in throttle.reason
    clock.now += 6  # backing off: no calls, the slow ones age out of the window
    assert throttle.after(100) == 0 and throttle.reason is None


def test_the_limits_follow_the_throttle_file_but_not_a_stale_one(tmp_path: Path) -> None:
    path = tmp_path / "throttle.json"
    ThrottleFile(path).write(Limits(max_rate=1))
    old = time.time() - 3600
    os.utime(path, (old, old))  # left over from an earlier run
    clock = FakeClock()
    throttle = Throttle(Limits(), source=ThrottleFile(path), clock=clock)
    assert throttle.after(100) == 0  # the stale file is ignored
    ThrottleFile(path).write(Limits(max_rate=50))  # an operator slows the running job
    clock.now += 2
    assert throttle.after(100) == pytest.approx(2.0)
    assert throttle.reason == "rate 50 checkpoints/s"
    ThrottleFile(path).clear()
    clock.now += 2
    assert throttle.after(100) == 0  # back to the job's own limits (none)


def test_the_relay_passes_each_change_of_the_jobs_source_on_as_each_processs_share(tmp_path: Path) -> None:
    """A job in N processes: the parent's throttle follows the throttle file, the relay
    hands each change on (the rate split N ways), each process's throttle follows the relay;
    both look at their source at most once a second."""
    path = tmp_path / "throttle.json"
    clock = FakeClock()
    relay = Relay(Throttle(Limits(), source=ThrottleFile(path), clock=clock), 4, start_context())
    assert relay.shared is not None and relay.shared.current() == Limits()  # unthrottled, but followed
    process = relay.shared.throttle()
    process.clock = clock
    assert process.after(100) == 0
    ThrottleFile(path).write(Limits(max_rate=200, max_load_ms=50))  # `dualsaver throttle` while it runs
    relay.relay()
    assert relay.shared.current() == Limits()  # the parent looked less than a second ago
    clock.now += 1
    relay.relay()
    assert relay.shared.current() == Limits(max_rate=50, max_load_ms=50)
    assert process.after(100) == pytest.approx(2.0) and process.limits == Limits(max_rate=50, max_load_ms=50)
    ThrottleFile(path).clear()  # back to the job's own limits: none
    clock.now += 3
    relay.relay()
    assert relay.shared.current() == Limits()
    assert process.after(100) == 0 and process.limits == Limits()
    assert Relay(None, 4, start_context()).shared is None  # no throttle: nothing to follow, nothing paid


def test_the_parent_says_why_its_processes_wait() -> None:
    """A job in N processes: its throttle's `reason` (its progress line) says why they wait,
    as the relay takes it back from them: the job's rate (not a process's share of it), or
    the store's latency, which wins; nothing once none waits."""
    clock = FakeClock()
    job = Throttle(Limits(max_rate=200, max_load_ms=50), clock=clock)
    relay = Relay(job, 2, start_context())
    assert relay.shared is not None
    first, second = relay.shared.throttle(0), relay.shared.throttle(1)
    first.clock = second.clock = clock
    relay.relay()
    assert job.reason is None
    assert first.after(100) == pytest.approx(1.0)  # its share: 100 checkpoints/s
    relay.relay()
    assert job.reason == "rate 200 checkpoints/s"
    second.observe(0.3)
    assert second.after(1) == BACKOFF
    relay.relay()
    assert job.reason == "p95 store latency 300 ms > 50 ms"
    clock.now += 10  # the rate's debt paid, the latencies out of the window
    assert first.after(0) == 0 and second.after(0) == 0
    relay.relay()
    assert job.reason is None


def test_backfill_and_check_keep_to_the_rate(tmp_path: Path, pg_url: str) -> None:
    with open_saver(f"sqlite:///{tmp_path / 'old.sqlite'}") as old, open_saver(pg_url) as new:
        run_threads(old, [f"t{n}" for n in range(4)], turns=1)
        total = sum(1 for t in native_for(old).thread_ids() for _ in native_for(old).read_thread(t))
        rate = total / 1.5  # the run may not be shorter than 1.5 s
        started = time.monotonic()
        result = backfill(old, new, state_path=tmp_path / "state", throttle=Throttle(Limits(max_rate=rate)))
        assert time.monotonic() - started >= total / rate
        assert result.checkpoints == total and result.throttled_s > 0
        started = time.monotonic()
        report = check(old, new, throttle=Throttle(Limits(max_rate=2 * rate)))
        assert report.clean and time.monotonic() - started >= total / (2 * rate)
        assert report.summary["throttled_seconds"] > 0


def test_max_load_backs_off_while_a_lock_slows_the_target(tmp_path: Path, pg_url: str, monkeypatch) -> None:
    monkeypatch.setattr("dualsaver.migrate._flow.BATCH_CHECKPOINTS", 10)  # several batches
    with open_saver(f"sqlite:///{tmp_path / 'old.sqlite'}") as old, open_saver(pg_url) as new:
        run_threads(old, [f"t{n}" for n in range(4)], turns=1)
        reasons: list[str] = []
        throttle = Throttle(Limits(max_load_ms=300), window=1.0)
        after = throttle.after

        def noting(checkpoints: int) -> float:
            delay = after(checkpoints)
            if throttle.reason:
                reasons.append(throttle.reason)
            return delay

        throttle.after = noting  # type: ignore[method-assign]
        locker = psycopg.connect(pg_url)
        locker.execute("LOCK TABLE checkpoint_writes IN ACCESS EXCLUSIVE MODE")  # held until commit
        release = threading.Timer(2.0, locker.commit)
        release.start()
        try:
            result = backfill(old, new, state_path=tmp_path / "state", throttle=throttle)
        finally:
            release.join()
            locker.close()
        assert not result.failed and result.threads == 4
        assert reasons and all("p95 store latency" in r for r in reasons)
        assert result.throttled_s >= BACKOFF


def test_fleet_limits_reach_jobs_started_anywhere(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with open_saver(old_url) as old:
        run_threads(old, [f"t{n}" for n in range(4)], turns=1)
        total = sum(1 for t in native_for(old).thread_ids() for _ in native_for(old).read_thread(t))
    rate = total / 1.5

    def dualsaver(pod: str, *args: str):
        (tmp_path / pod).mkdir(exist_ok=True)
        return run_cli(*args, "--control", redis_url, cwd=tmp_path / pod)

    set_ = dualsaver("operator", "throttle", "--max-rate", str(rate))
    assert set_.returncode == 0 and "control store" in set_.stdout, set_.stderr
    shown = json.loads(dualsaver("elsewhere", "throttle", "--show").stdout)
    assert shown["limits"] == {"max_rate": rate, "max_load_ms": None}
    status = dualsaver("elsewhere", "status")
    assert f"throttle: max rate {rate:g}/s for every job" in status.stdout, status.stdout

    done = dualsaver("job", "backfill", "--old", old_url, "--new", pg_url, "--json", "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["checkpoints"] == total and result["throttled_s"] > 0
    assert result["elapsed_s"] >= total / rate  # the fleet's cap, the job given none of its own

    cleared = dualsaver("operator", "throttle", "--clear")
    assert cleared.returncode == 0 and "cleared" in cleared.stdout
    assert json.loads(dualsaver("elsewhere", "throttle", "--show").stdout)["limits"] is None


def test_fleet_limits_are_kept_while_the_control_store_is_away(tmp_path: Path) -> None:
    with EmbeddedRedis(appendonly=True, data_dir=tmp_path / "control") as server:
        record = open_phase_record(server.url, timeout=0.5)
        FleetThrottle(record).write(Limits(max_rate=7))
        fleet = FleetThrottle(record).started()  # as a job's throttle begins
        assert fleet.current() == Limits(max_rate=7)
        server.stop()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # background reads fail meanwhile
            assert fleet.current() == Limits(max_rate=7)
            time.sleep(0.1)
        server.start()
        FleetThrottle(record).clear()
        eventually(lambda: fleet.current() == Limits(), "the cleared limits are read")
        record.close()
