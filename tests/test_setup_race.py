"""Replicas starting at once against a fresh PostgreSQL all open it: the saver's migrations
and dualsaver's own tables are created one process at a time, never twice."""

from __future__ import annotations

import subprocess
import sys
import time

OPEN_AT = """
import sys, time
from dualsaver.stores import open_saver
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
with open_saver(sys.argv[1]) as saver:
    saver.list({"configurable": {"thread_id": "t"}})
"""

RECORD_AT = """
import sys, time
from dualsaver.control.record import open_phase_record
from dualsaver.control.phase import Phase
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
with open_phase_record(sys.argv[1], name="race") as record:
    record.heartbeat(f"replica-{sys.argv[3]}", Phase.SHADOW_WRITE, 2.0)
"""


def _at_once(script: str, url: str, n: int) -> list[subprocess.CompletedProcess[str]]:
    start = time.time() + 3.0  # every process is up and waiting by then
    procs = [
        subprocess.Popen([sys.executable, "-c", script, url, str(start), str(i)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


def test_replicas_open_a_fresh_postgres_at_once(pg_url_factory) -> None:
    for _ in range(2):  # two fresh databases: a race that is lost only sometimes still shows
        done = _at_once(OPEN_AT, pg_url_factory(), 6)
        assert [d.stderr[-500:] for d in done if d.returncode != 0] == []


def test_replicas_create_the_record_tables_at_once(pg_url_factory) -> None:
    done = _at_once(RECORD_AT, pg_url_factory(), 6)
    assert [d.stderr[-500:] for d in done if d.returncode != 0] == []


def test_a_fresh_target_opens_with_a_pool_too(pg_url: str) -> None:
    from dualsaver.stores import open_saver, store_fingerprint

    with open_saver(pg_url, pool_size=3) as pooled, open_saver(pg_url.replace("127.0.0.1", "localhost")) as plain:
        assert pooled.get_tuple({"configurable": {"thread_id": "t"}}) is None
        assert store_fingerprint(pooled) == store_fingerprint(plain)  # one store, two URLs
