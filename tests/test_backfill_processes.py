"""`backfill(..., processes=N)` / `dualsaver backfill --processes N`: one job run in N
processes, SQLite -> PostgreSQL, every store real.

The processes' union is exactly what a single-process backfill writes (independent snapshots)
and the check is clean; there is one job in the progress record (local file or control
store), one progress display fed once per thread, one result; a run whose parent is killed
leaves no process copying, and the next run resumes without copying finished threads again;
bad input is refused with a message that says why.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dualsaver import check
from dualsaver.control.record import open_phase_record
from dualsaver.migrate import backfill
from dualsaver.stores import native_for, open_saver
from tests.backfill_support import normalize, run_threads, snapshot_postgres, snapshot_sqlite
from tests.ops_support import cli_env, eventually, run_cli

THREADS = [f"thread-{i:03d}" for i in range(40)]


def _serde():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer()


@pytest.fixture(scope="module")
def many_threads(tmp_path_factory) -> tuple[str, dict]:
    """A bigger store (the real threads' rows under many more ids), of several batches."""
    path = tmp_path_factory.mktemp("processes") / "many.sqlite"
    with open_saver(f"sqlite:///{path}") as old:
        run_threads(old, THREADS[:4], turns=2)
        store = native_for(old)
        seeds = [list(store.read_thread(t)) for t in THREADS[:4]]
        for n in range(100):
            store.write_checkpoints([replace(i, thread_id=f"copy-{n:03d}-{k}") for k, items in enumerate(seeds)
                                     for i in items])
        return f"sqlite:///{path}", normalize(snapshot_sqlite(str(path), old.serde))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[str, dict]:
    """An old SQLite store of real graph history: its URL and an independent snapshot."""
    path = tmp_path_factory.mktemp("processes") / "old.sqlite"
    with open_saver(f"sqlite:///{path}") as old:
        run_threads(old, THREADS, turns=2)
        return f"sqlite:///{path}", normalize(snapshot_sqlite(str(path), old.serde))


class Recorder:
    """A progress display that remembers what it was told."""

    def __init__(self) -> None:
        self.starts: list[tuple[int | None, int]] = []
        self.threads: list[str] = []
        self.checkpoints = self.writes = 0

    def start(self, total: int | None, already_done: int) -> None:
        self.starts.append((total, already_done))

    def advance(self, thread_id: str, status: str, checkpoints: int, writes: int) -> None:
        assert status == "ok"
        self.threads.append(thread_id)
        self.checkpoints += checkpoints
        self.writes += writes


def _jobs(state: Path) -> list[tuple]:
    with sqlite3.connect(state) as conn:
        return conn.execute("SELECT job, shard, finished_at IS NOT NULL FROM jobs").fetchall()


def _done(state: Path) -> int:
    if not state.exists():
        return 0
    with sqlite3.connect(state) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM done").fetchone()[0]
        except sqlite3.OperationalError:  # its tables are not made yet
            return 0


def test_processes_copy_what_one_process_copies_as_one_job(history, pg_url_factory, tmp_path) -> None:
    old_url, source = history
    single_url, multi_url = pg_url_factory(), pg_url_factory()
    with open_saver(old_url) as old, open_saver(single_url) as new:
        single = backfill(old, new, state_path=tmp_path / "single.sqlite")
    progress, state = Recorder(), tmp_path / "multi.sqlite"

    result = backfill(old_url, multi_url, processes=2, workers=2, state_path=state, progress=progress)

    assert normalize(snapshot_postgres(multi_url, _serde())) == normalize(snapshot_postgres(single_url, _serde()))
    assert normalize(snapshot_postgres(multi_url, _serde())) == source
    assert (result.threads, result.checkpoints, result.writes) == (single.threads, single.checkpoints, single.writes)
    assert (result.failed, result.unreadable, result.skipped, result.exact) == (0, 0, 0, True)
    assert progress.starts == [(len(THREADS), 0)]  # one display, started once
    assert sorted(progress.threads) == THREADS  # every thread reported once
    assert (progress.checkpoints, progress.writes) == (result.checkpoints, result.writes)
    assert _jobs(state) == [(_jobs(state)[0][0], "all", 1)]  # one job, finished
    assert _done(state) == len(THREADS)
    with open_saver(old_url) as old, open_saver(multi_url) as new:
        assert check(old, new).clean

    again = backfill(old_url, multi_url, processes=3, state_path=state)  # any N resumes the same job
    assert (again.threads, again.threads_resumed, again.checkpoints) == (0, len(THREADS), 0)


def test_the_control_store_holds_one_job(history, pg_url_factory, tmp_path) -> None:
    old_url, source = history
    new_url, control_url = pg_url_factory(), pg_url_factory()

    result = backfill(old_url, new_url, processes=2, control=control_url, state_path=tmp_path / "unused.sqlite")

    assert result.failed == 0 and result.threads == len(THREADS)
    assert normalize(snapshot_postgres(new_url, _serde())) == source
    with open_phase_record(control_url) as record:
        (job,) = record.jobs()
        assert job["shard"] == "all" and job["finished_at"] and job["summary"], job
        assert job["threads_done"] == job["threads"] == len(THREADS)
    assert not (tmp_path / "unused.sqlite").exists()  # progress went to the control store only


def test_a_dry_run_in_processes_counts_and_writes_nothing(history, pg_url, tmp_path) -> None:
    old_url, source = history

    result = backfill(old_url, pg_url, processes=2, dry_run=True, state_path=tmp_path / "p.sqlite")

    assert (result.dry_run, result.threads, result.checkpoints) == (True, len(THREADS), len(source))
    assert snapshot_postgres(pg_url, _serde()) == {}


def _descendants(pid: int) -> set[int]:
    """The ids of the processes below `pid` (Linux /proc): the copy processes, and the fork
    server they come from."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the copy processes in /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_mid_way_it_stops_and_resumes_without_copying_again(many_threads, pg_url, tmp_path, sig) -> None:
    old_url, source = many_threads
    threads = len({t for t, _, _ in source})
    state = tmp_path / "progress.sqlite"
    args = ["backfill", "--old", old_url, "--new", pg_url, "--state", str(state), "--no-progress", "--processes", "2"]
    first = subprocess.Popen(  # slowed, so that it is surely killed half-way
        [sys.executable, "-m", "dualsaver.cli", *args, "--max-rate", "500"],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    eventually(lambda: first.poll() is None and state.exists() and _done(state) >= 4, "some threads done", 120)
    copying = _descendants(first.pid)
    assert len(copying) >= 3  # two copy processes and the fork server
    first.send_signal(sig)
    first.communicate(timeout=60)
    eventually(lambda: not any(_alive(p) for p in copying), "the copy processes exit with their parent", 30)
    done = _done(state)
    assert 4 <= done < threads

    again = run_cli(*args, "--json", env=cli_env())

    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["threads_resumed"] == done  # finished threads are not read again
    assert result["threads"] == threads - done
    assert normalize(snapshot_postgres(pg_url, _serde())) == source
    assert len(_jobs(state)) == 1


def test_bad_input_is_refused_and_says_why(history, pg_url, tmp_path) -> None:
    old_url, _ = history
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="processes must be a whole number"):
            backfill(old_url, pg_url, processes=bad, state_path=tmp_path / "p.sqlite")
    with pytest.raises(ValueError, match="cannot be combined"):
        backfill(old_url, pg_url, processes=2, shard=(0, 2), state_path=tmp_path / "p.sqlite")
    with open_saver(old_url) as old, open_saver(pg_url) as new, pytest.raises(TypeError, match="URLs"):
        backfill(old, new, processes=2, state_path=tmp_path / "p.sqlite")

    base = ["backfill", "--old", old_url, "--new", pg_url, "--state", str(tmp_path / "p.sqlite"), "--no-progress"]
    zero = run_cli(*base, "--processes", "0")
    assert zero.returncode == 2 and "--processes" in zero.stderr and "positive integer" in zero.stderr
    both = run_cli(*base, "--processes", "2", "--shard", "0/2")
    assert both.returncode == 2 and "cannot be combined" in both.stderr, both.stderr
    assert snapshot_postgres(pg_url, _serde()) == {}  # nothing was copied


async def test_into_an_encrypted_store_with_a_key_set_after_the_first_run(history, pg_url_factory, tmp_path,
                                                                           monkeypatch) -> None:
    """The serializers cross to the processes by name and the key by the environment as it
    is when the job starts (the fork server of an earlier job has an older one)."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    from dualsaver.migrate import abackfill

    old_url, source = history
    backfill(old_url, pg_url_factory(), processes=1, state_path=tmp_path / "first.sqlite")  # the server runs
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "0123456789abcdef0123456789abcdef")
    new_url = pg_url_factory()

    result = await abackfill(old_url, new_url, processes=2, serdes=("default", "encrypted"),
                             state_path=tmp_path / "p.sqlite")

    assert result.failed == 0 and result.checkpoints == len(source)
    encrypted = EncryptedSerializer.from_pycryptodome_aes()
    assert normalize(snapshot_postgres(new_url, encrypted)) == source


def test_the_jobs_rate_is_shared_among_its_processes() -> None:
    from dualsaver.control.throttle import Limits
    from dualsaver.control.throttle import share

    assert share(Limits(max_rate=100, max_load_ms=50), 4) == Limits(max_rate=25, max_load_ms=50)
    assert share(Limits(max_load_ms=50), 4) == Limits(max_load_ms=50)
    assert share(Limits(), 4) is None and share(None, 4) is None


class SlowedOnce(Recorder):
    """A progress display at whose first finished thread an operator writes `limits` to the
    throttle file, as `dualsaver throttle` does, while the job runs."""

    def __init__(self, path: Path, limits, throttle) -> None:
        super().__init__()
        self.path, self.limits, self.throttle = path, limits, throttle
        self.reasons: set[str | None] = set()  # what the progress line said while the job waited

    def advance(self, thread_id: str, status: str, checkpoints: int, writes: int) -> None:
        if not self.threads:
            from dualsaver.control.throttle import ThrottleFile

            ThrottleFile(self.path).write(self.limits)
        self.reasons.add(self.throttle.reason)
        super().advance(thread_id, status, checkpoints, writes)


def test_the_operator_slows_a_running_backfill_in_every_process(many_threads, pg_url, tmp_path) -> None:
    """Changed while it runs, the job's limits reach its processes: they wait longer than the
    rate the job started with could make them (at a rate r, N processes copying `total` wait
    at most N * total / r seconds in all, however slow the machine)."""
    from dualsaver.control.throttle import Limits, throttle_for

    old_url, source = many_threads
    total = len(source)
    started_rate, slowed_rate = total / 4, total / 16  # the run at least 4 s, then 4 times slower
    path = tmp_path / "throttle.json"
    throttle = throttle_for(started_rate, None, str(path))  # as the CLI builds it
    progress = SlowedOnce(path, Limits(max_rate=slowed_rate), throttle)
    result = backfill(old_url, pg_url, processes=2, state_path=tmp_path / "state.sqlite", throttle=throttle,
                      progress=progress)
    assert result.failed == 0 and result.checkpoints == total
    assert result.throttled_s > 1.25 * (2 * total / started_rate), result.throttled_s  # the first rate: at most 1x
    assert f"rate {slowed_rate:g} checkpoints/s" in progress.reasons  # the job's rate, not a process's share
