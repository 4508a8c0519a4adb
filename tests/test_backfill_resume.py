"""Killed with SIGKILL at random points and run again, the CLI backfill ends with an exact copy."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from dualsaver.stores import open_saver
from tests.backfill_support import normalize, run_threads, snapshot_postgres, snapshot_sqlite

pytestmark = pytest.mark.slow


def _cli(old: str, new: str, state, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dualsaver.cli", "backfill", "--old", old, "--new", new,
         "--state", str(state), "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigkill_at_random_points_then_resume_is_exact(sqlite_path, pg_url, tmp_path) -> None:
    seed = int(os.environ.get("DUALSAVER_TEST_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    threads = [f"t{i:03d}" for i in range(30)]
    with open_saver(f"sqlite:///{sqlite_path}") as old:
        run_threads(old, threads, turns=2)
        source = normalize(snapshot_sqlite(str(sqlite_path), old.serde))
    old_url, state = f"sqlite:///{sqlite_path}", tmp_path / "progress.sqlite"

    kills = 0
    for _ in range(4):  # kill at a random moment: before start, mid-thread, between threads
        proc = _cli(old_url, pg_url, state, "--workers", str(rng.choice([1, 2])))
        time.sleep(rng.uniform(0.2, 3.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)

    final = _cli(old_url, pg_url, state)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, f"seed={seed}: {err}"
    assert normalize(snapshot_postgres(pg_url, _serde())) == source, f"seed={seed}, kills={kills}"

    again = _cli(old_url, pg_url, state, "--restart", "--json")  # a full re-run adds nothing
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    import json

    result = json.loads(out)
    assert (result["checkpoints"], result["writes"], result["skipped"]) == (0, 0, len(source))
    assert normalize(snapshot_postgres(pg_url, _serde())) == source


def _serde():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer()
