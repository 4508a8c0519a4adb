"""A stopped or killed item backfill, run again, ends with an exact copy and no duplicates;
namespaces finished before the stop are not read again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dualsaver.control.throttle import Limits, Throttle
from dualsaver.items import (
    abackfill_items, acheck_items, aopen_item_store, backfill_items, check_items, open_item_store,
)
from tests.items_support import INDEX, plant

REPO = Path(__file__).resolve().parents[1]


class Stop(Exception):
    pass


def _fill(store, namespaces=12, per=30):
    for n in range(namespaces):
        for k in range(per):
            store.put(("org", f"n{n:02d}"), f"k{k:02d}", {"text": f"fact {n} {k}", "k": k},
                      ttl=90 if k % 4 == 0 else None)


def test_a_backfill_stopped_after_a_batch_resumes_where_it_was(tmp_path):
    with open_item_store(f"sqlite:///{tmp_path}/old.sqlite", index=INDEX) as old, \
            open_item_store(f"sqlite:///{tmp_path}/new.sqlite", index=INDEX) as new:
        _fill(old)
        batches = []

        def stop_after_two(result):
            batches.append(result.items)
            if len(batches) == 2:
                raise Stop

        with pytest.raises(Stop):
            backfill_items(old, new, batch=50, state_path=tmp_path / "p.sqlite", on_batch=stop_after_two)
        copied = batches[-1]
        assert 0 < copied < 360
        again = backfill_items(old, new, batch=50, state_path=tmp_path / "p.sqlite")
        assert again.namespaces_resumed >= 2  # 100 items: at least two whole namespaces of 30
        assert again.items == 360 - copied and again.bad == 0
        assert check_items(old, new).clean


def test_a_killed_backfill_run_again_ends_clean(tmp_path):
    """A real SIGKILL in the middle of a throttled run, then a second run."""
    old_url, new_url = f"sqlite:///{tmp_path}/old.sqlite", f"sqlite:///{tmp_path}/new.sqlite"
    with open_item_store(old_url, index=INDEX) as old:
        _fill(old, namespaces=20, per=25)
    script = (
        "import sys; from dualsaver.items import backfill_items, open_item_store\n"
        "from dualsaver.control.throttle import Limits, Throttle\n"
        "from tests.items_support import INDEX\n"
        f"with open_item_store({old_url!r}, index=INDEX) as o, open_item_store({new_url!r}, index=INDEX) as n:\n"
        "    backfill_items(o, n, batch=20, throttle=Throttle(Limits(max_rate=200)),"
        f" state_path={str(tmp_path / 'p.sqlite')!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until some namespaces are recorded done
            try:
                with sqlite3.connect(tmp_path / "p.sqlite") as conn:
                    if conn.execute("SELECT count(*) FROM done").fetchone()[0] >= 3:
                        break
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        assert child.poll() is None, "the run finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    with open_item_store(old_url, index=INDEX) as old, open_item_store(new_url, index=INDEX) as new:
        again = backfill_items(old, new, batch=20, state_path=tmp_path / "p.sqlite")
        assert again.namespaces_resumed >= 3 and again.bad == 0
        assert check_items(old, new).clean
        assert new.conn.execute("SELECT count(*) FROM store").fetchone()[0] == 500


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_the_async_backfill_and_check_over_the_async_stores(kind, pg_url, request, tmp_path):
    target = pg_url if kind == "postgres" else request.getfixturevalue("langgraph_redis_url")

    async def scenario():
        async with aopen_item_store(f"sqlite:///{tmp_path}/old.sqlite", index=INDEX) as old, \
                aopen_item_store(target, index=INDEX) as new:
            await asyncio.to_thread(plant, old)
            throttle = Throttle(Limits(max_rate=100_000))
            first = await abackfill_items(old, new, state_path=tmp_path / "p.sqlite", throttle=throttle)
            again = await abackfill_items(old, new, state_path=tmp_path / "p.sqlite", resume=False)
            report = await acheck_items(old, new)
            return first, again, report, type(new).__name__

    first, again, report, name = asyncio.run(scenario())
    assert name.startswith("Async") or kind == "redis"  # see aopen_item_store
    assert (first.items, again.items, again.skipped) == (40, 0, 40)
    assert report.clean, [d.to_dict() for d in report.divergences]


def test_shards_and_a_prefix_split_the_work_without_overlap(tmp_path):
    with open_item_store(f"sqlite:///{tmp_path}/old.sqlite", index=INDEX) as old, \
            open_item_store(f"sqlite:///{tmp_path}/new.sqlite", index=INDEX) as new:
        _fill(old, namespaces=9, per=4)
        under = backfill_items(old, new, prefix=("org", "n03"), state_path=tmp_path / "p.sqlite")
        assert (under.items, under.namespaces) == (4, 1)
        halves = [backfill_items(old, new, shard=(i, 2), state_path=tmp_path / "p.sqlite") for i in (0, 1)]
        assert sum(h.items for h in halves) == 36 - 4 and sum(h.skipped for h in halves) == 4
        assert all(h.namespaces for h in halves)  # the hash spreads nine namespaces over both
        assert check_items(old, new).clean
        assert check_items(old, new, shard=(0, 2)).summary["items"]["compared"] == halves[0].items + (
            4 if halves[0].skipped else 0)
