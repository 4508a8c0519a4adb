"""`check(..., processes=N)` / `dualsaver check --processes N`: one check run as N processes,
SQLite against PostgreSQL, every store real, divergences of every kind planted.

The merge of the reports of a shard's parts is the report of one check of that shard (time
fields aside), whatever the split, the options and the threads asked for; the check in
processes reports what the check in one process reports, with one progress; a process
that fails or dies fails the check with a `CheckError`; a killed parent leaves no process
behind; bad input is refused with a message that says why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualsaver import CheckError, acheck, check
from dualsaver.checker._merge import TIME_FIELDS, merge_reports
from dualsaver.checker._processes import check_in_processes, parts_of
from dualsaver.stores import open_saver
from tests import check_support as cs
from tests.ops_support import cli_env, eventually, run_cli
from tests.test_backfill_processes import _alive, _descendants

THREADS = [f"t-{i:02d}" for i in range(12)]
BACKOFF = (0.0, 0.0)  # two re-check rounds, no waiting


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def divergent(postgres, tmp_path_factory) -> Any:
    """(old URL, new URL): SQLite and PostgreSQL holding the same twelve threads of a real
    graph, with a divergence of each kind planted in six of them."""
    name = f"check_processes_{os.getpid()}"
    new_url = postgres.create_database(name)
    path = tmp_path_factory.mktemp("processes") / "old.sqlite"
    with open_saver(sqlite_url(path)) as old, open_saver(new_url) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        cs.rewrite_thread(new, "t-01", lambda rows: rows[:-1])  # missing_in_new
        cs.rewrite_thread(old, "t-02", lambda rows: rows[1:])  # missing_in_old
        cs.rewrite_thread(new, "t-04", lambda rows: [cs.with_checkpoint(rows[0], "value"), *rows[1:]])
        cs.rewrite_thread(new, "t-06", lambda rows: [cs.with_metadata(rows[0]), *rows[1:]])
        cs.rewrite_thread(new, "t-09", lambda rows: [rows[0], cs.with_writes(rows[1], "add"), *rows[2:]])
        row = cs.items(old, "t-11")[2]
    cs.corrupt_sqlite(str(path), "t-11", row.checkpoint_ns, row.checkpoint_id)  # unreadable
    yield sqlite_url(path), new_url
    postgres.drop_database(name)


def comparable(report: Any, processes: int | None = None) -> dict[str, Any]:
    """A report as a dict without its time fields (and with `processes` as given)."""
    data = report.to_dict()
    data["summary"] = {k: v for k, v in data["summary"].items() if k not in TIME_FIELDS}
    if processes is not None:
        data["summary"]["processes"] = processes
    return data


# --------------------------------------------------------------------------- the merge


shards = st.none() | st.integers(1, 3).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n)))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(processes=st.integers(1, 4), shard=shards,
       thread_ids=st.none() | st.lists(st.sampled_from([*THREADS, "absent"]), min_size=1, max_size=6, unique=True),
       workers=st.integers(1, 2), compare=st.sampled_from(["auto", "decoded"]), recheck=st.booleans(),
       show_values=st.booleans(), primary=st.sampled_from(["old", "new"]))
def test_the_merge_of_the_parts_reports_is_the_report_of_the_whole(
    divergent, processes, shard, thread_ids, workers, compare, recheck, show_values, primary
):
    options = {"thread_ids": thread_ids, "workers": workers, "compare": compare, "recheck": recheck,
               "show_values": show_values, "primary": primary, "backoff": BACKOFF}
    with open_saver(divergent[0]) as old, open_saver(divergent[1]) as new:
        whole = check(old, new, shard=shard, **options)
        parts = [check(old, new, shard=part, **options) for part in parts_of(shard, processes)]

    merged = merge_reports(parts, shard=shard, processes=processes)

    assert comparable(merged) == comparable(whole, processes=processes)
    assert sorted(t for p in parts for t in {d.thread_id for d in p.divergences}) == whole.affected_threads()


def test_the_parts_of_a_shard_are_disjoint_and_make_it_up():
    from dualsaver.stores import in_shard

    ids = [f"thread-{i}" for i in range(500)]
    for shard in (None, (0, 1), (1, 3), (2, 3), (0, 2)):
        for processes in (1, 2, 3, 5):
            owners = [[p for p in parts_of(shard, processes) if in_shard(t, p)] for t in ids]
            assert all(len(o) == (1 if in_shard(t, shard) else 0) for t, o in zip(ids, owners))


# --------------------------------------------------------------------------- in processes


class Recorder(list):
    """A progress callback that remembers what it was told."""

    def __call__(self, progress: Any) -> None:
        self.append(progress)


async def test_processes_report_what_one_process_reports(divergent):
    old_url, new_url = divergent
    with open_saver(old_url) as old, open_saver(new_url) as new:
        one = check(old, new, backoff=BACKOFF, workers=2)
        one_shard = check(old, new, backoff=BACKOFF, shard=(1, 2))
    assert {d.kind for d in one.divergences} == {"missing_in_new", "missing_in_old", "checkpoint_mismatch",
                                                 "metadata_mismatch", "writes_mismatch", "unreadable"}
    seen = Recorder()

    two = check(old_url, new_url, processes=2, backoff=BACKOFF, workers=2, progress=seen)

    assert comparable(two) == comparable(one, processes=2)
    assert two.summary["processes"] == 2 and two.summary["workers"] == 2 and two.summary["shard"] is None
    phases = [p.phase for p in seen]
    assert phases[0] == "scan" and "recheck" in phases
    assert phases == sorted(phases, key=["scan", "recheck"].index)  # one progress: the scan, then the rounds
    assert max(p.threads for p in seen if p.phase == "scan") == len(THREADS)
    assert seen[-1].suspects == len(one.affected_threads())
    # a shard of the stores, in processes; and the async form
    three = check(old_url, new_url, processes=3, backoff=BACKOFF, shard=(1, 2))
    assert comparable(three) == comparable(one_shard, processes=3)
    assert comparable(await acheck(old_url, new_url, processes=2, backoff=BACKOFF, workers=2)) == comparable(two)


def test_the_command_reports_what_one_process_reports(divergent, tmp_path):
    old_url, new_url = divergent
    base = ["check", "--old", old_url, "--new", new_url]

    one = run_cli(*base, "--report", str(tmp_path / "one.json"), cwd=tmp_path)
    two = run_cli(*base, "--report", str(tmp_path / "two.json"), "--processes", "2", cwd=tmp_path)

    assert one.returncode == two.returncode == 1, two.stderr
    reports = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two")]
    for report in reports:
        report["summary"] = {k: v for k, v in report["summary"].items() if k not in TIME_FIELDS}
    assert reports[1]["summary"].pop("processes") == 2
    assert reports[0]["summary"].pop("processes") == 1
    assert reports[1] == reports[0] and reports[0]["divergences"]
    assert "check: re-check round" in two.stderr  # the progress, from the processes'
    assert "check: 12 thread(s), 120 checkpoint(s) compared, 6 divergent thread(s)" in two.stderr  # the totals
    assert two.stdout.splitlines()[0] == one.stdout.splitlines()[0]  # Safe to switch reads: no: ...
    assert "processes" in run_cli("check", "--help").stdout


# --------------------------------------------------------------------------- failures


def test_bad_input_is_refused_and_says_why(divergent, tmp_path):
    old_url, new_url = divergent
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="processes must be a whole number"):
            check(old_url, new_url, processes=bad)
    with pytest.raises(ValueError, match="bad shard"):
        check(old_url, new_url, processes=2, shard=(2, 2))
    with pytest.raises(TypeError, match="worker"):
        check(old_url, new_url, processes=2, worker=2)  # type: ignore[call-arg]
    with open_saver(old_url) as old, open_saver(new_url) as new, pytest.raises(TypeError, match="URLs"):
        check(old, new, processes=2)
    with pytest.raises(TypeError, match="URLs"):
        check(old_url, object(), processes=2)
    with pytest.raises(ValueError, match=r"store URL|scheme"):
        check("nosuch://x", new_url, processes=2)

    zero = run_cli("check", "--old", old_url, "--new", new_url, "--processes", "0", cwd=tmp_path)
    assert zero.returncode == 2 and "--processes" in zero.stderr and "positive integer" in zero.stderr


def test_an_unreachable_store_gives_the_check_error_of_one_process(divergent, postgres, tmp_path):
    old_url = divergent[0]
    name = f"check_processes_gone_{os.getpid()}"
    new_url = postgres.create_database(name)
    with open_saver(old_url) as old, open_saver(new_url) as new:
        postgres.drop_database(name)  # its sessions end with it
        with pytest.raises(CheckError, match="store unreachable during the check") as one:
            check(old, new)
    with pytest.raises(CheckError, match="store unreachable during the check") as two:
        check(old_url, new_url, processes=2)
    assert one.value.__cause__ is not None and two.value.__cause__ is not None  # what the command prints


def _fails(old: Any, new: Any, **options: Any) -> Any:
    """A part that loses its store (what `outages` raises), in shard 1 only."""
    if options["shard"][0] == 1:
        raise CheckError("store unreachable during the check: OperationalError") from ConnectionError("gone")
    return check(old, new, **options)


def _dies(old: Any, new: Any, **options: Any) -> Any:
    """A part whose process dies without a word (as one the OOM killer ends), in shard 0 only."""
    if options["shard"][0] == 0:
        os._exit(7)
    return check(old, new, **options)


def test_a_process_that_fails_or_dies_fails_the_check(divergent):
    with pytest.raises(CheckError, match="store unreachable during the check: OperationalError") as failed:
        check_in_processes(_fails, *divergent, processes=2, serdes=("default", "default"), options={})
    assert isinstance(failed.value.__cause__, ConnectionError)
    with pytest.raises(CheckError, match=r"check process 0 \(shard 0/2\) exited \(code 7\) before it reported"):
        check_in_processes(_dies, *divergent, processes=2, serdes=("default", "default"), options={})


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the check processes in /proc")
def test_a_killed_check_leaves_no_process_behind(divergent, tmp_path):
    old_url, new_url = divergent
    run = subprocess.Popen(  # slowed, so that it is surely killed half-way
        [sys.executable, "-m", "dualsaver.cli", "check", "--old", old_url, "--new", new_url, "--processes", "2",
         "--max-rate", "5", "--quiet"],
        env=cli_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    eventually(lambda: len(_descendants(run.pid)) >= 3, "two check processes and their fork server", 60)
    checking = _descendants(run.pid)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    eventually(lambda: not any(_alive(p) for p in checking), "the check processes exit with their parent", 30)


@pytest.fixture(scope="module")
def many_small(tmp_path_factory) -> tuple[str, str, int]:
    """(old URL, new URL, checkpoints): two SQLite stores holding the same 2,000 small threads,
    so that each process of a check reads many batches (`dualsaver.checker._run.BATCH`)."""
    import shutil
    from dataclasses import replace

    from dualsaver.stores import native_for
    from tests.backfill_support import run_threads

    old_path, new_path = (tmp_path_factory.mktemp("many") / name for name in ("old.sqlite", "new.sqlite"))
    with open_saver(sqlite_url(old_path)) as old:
        run_threads(old, ["seed-0", "seed-1"], turns=1)
        store = native_for(old)
        seeds = [list(store.read_thread(t)) for t in ("seed-0", "seed-1")]
        for n in range(999):
            store.write_checkpoints([replace(i, thread_id=f"copy-{n:03d}-{k}") for k, items in enumerate(seeds)
                                     for i in items])
        total = sum(1 for t in store.thread_ids() for _ in store.read_thread(t))
    shutil.copy(old_path, new_path)
    return sqlite_url(old_path), sqlite_url(new_path), total


def test_the_fleet_slows_a_running_check_in_every_process(many_small, redis_url) -> None:
    """A check given no limits of its own follows the fleet's, in every process, and their
    change while it runs (`dualsaver throttle --max-rate` with a control store): its
    processes wait longer than the first rate could make them (at a rate r, N processes
    comparing `total` checkpoints wait at most N * total / r seconds in all)."""
    from dualsaver.control.record import open_phase_record
    from dualsaver.control.throttle import FleetThrottle, Limits, throttle_for

    old_url, new_url, total = many_small
    started_rate, slowed_rate = total / 4, total / 12  # the check at least 4 s, then 3 times slower
    control = open_phase_record(redis_url)
    FleetThrottle(control).write(Limits(max_rate=started_rate))  # set before the check starts
    slowed: list[bool] = []

    def progress(p: Any) -> None:
        if p.checkpoints and not slowed:
            FleetThrottle(control).write(Limits(max_rate=slowed_rate))  # the operator, while it runs
            slowed.append(True)

    try:
        report = check(old_url, new_url, processes=2, progress=progress,
                       throttle=throttle_for(None, None, control=control))  # as the CLI builds it
    finally:
        control.close()
    assert report.clean and slowed and report.summary["checkpoints_compared"] == total
    bound = 2 * total / started_rate  # what the first rate allowed, at most
    assert report.summary["throttled_seconds"] > 1.25 * bound, report.summary["throttled_seconds"]
