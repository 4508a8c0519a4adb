"""Read-switch waits for a check started after the fleet left shadow-write.

In shadow-write a replica writes new's copy of each turn behind, and a replica that crashes
loses what it had queued with no journal entry (journaling every write first would cost
the caller what write-behind saves). A clean check made in shadow-write therefore says
nothing of turns acknowledged after it: the guard wants one started after the phase record
left shadow-write, and that check finds what a crash lost. Real SQLite stores, a real Redis
control store, a real replica process killed with SIGKILL, the real `dualsaver` command.
"""

from __future__ import annotations

import subprocess
import sys

from dualsaver.control.record import open_control_store
from dualsaver.stores import open_saver
from tests.graphs import config
from tests.ops_support import REPO, eventually, sqlite_migration

# A replica: one acknowledged turn in shadow-write whose copy for new is stuck in the
# write-behind queue (new hangs), then it waits to be killed.
REPLICA = """
import sys, time
from dualsaver import DualSaver
from dualsaver.control.record import open_control_store
from dualsaver.stores import open_saver
from tests.faulty import Faulty
from tests.graphs import build_agent, run_turn
old_url, new_url, control = sys.argv[1:4]
with open_saver(old_url) as old, open_saver(new_url) as healthy:
    new = Faulty(healthy)
    new.mode = "hang"
    saver = DualSaver(old, new, control=control, journal="spool.sqlite")
    assert str(saver.phase) == "shadow-write"
    run_turn(build_agent(saver), "lost-in-a-crash", "alpha")
    new.entered.wait(30)
    print("acknowledged; new's copy queued", flush=True)
    time.sleep(120)
"""


def test_a_check_made_in_shadow_write_does_not_switch_reads(tmp_path, redis_url):
    urls, env, cli = sqlite_migration(tmp_path, redis_url)
    with open_saver(urls["old"]), open_saver(urls["new"]):
        pass  # the tables
    assert cli("phase", "set", "shadow-write")[0] == 0
    assert cli("backfill")[0] == 0
    code, text = cli("check")
    assert code == 0, text  # clean: both stores empty, and it says it will not do
    assert "Safe to switch reads: not yet: the stores agree, but the fleet was in shadow-write" in text, text

    replica = subprocess.Popen(
        [sys.executable, "-c", REPLICA, urls["old"], urls["new"], redis_url],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = replica.stdout.readline()
        assert line.startswith("acknowledged"), line + replica.stderr.read()
    finally:
        replica.kill()  # a crash: the queued copy is lost, and no journal names it
        replica.wait()
    with open_saver(urls["old"]) as old, open_saver(urls["new"]) as new:
        assert old.get_tuple(config("lost-in-a-crash")) is not None
        assert new.get_tuple(config("lost-in-a-crash")) is None

    assert cli("phase", "set", "backfill")[0] == 0
    code, text = cli("phase", "set", "read-switch")  # the check, the backfill: clean, and too old
    assert code == 1, text
    assert "no check has started since the fleet left shadow-write" in text, text
    code, text = cli("check", "--report", "check.json")
    assert code == 1 and "lost-in-a-crash" in (tmp_path / "check.json").read_text(), text
    assert cli("repair", "--report", "check.json")[0] == 0
    code, text = cli("check")
    assert code == 0 and "Safe to switch reads: yes" in text, text
    with open_control_store(redis_url) as control:  # the killed replica's heartbeat ages out
        eventually(lambda: not [r for r in control.replicas() if r.alive()], "the crashed replica counts as gone")
    code, text = cli("phase", "set", "read-switch")
    assert code == 0, text
    with open_saver(urls["new"]) as new:
        assert new.get_tuple(config("lost-in-a-crash")) is not None  # reads from new find the turn
