"""Read-switch waits for a check started after the fleet left shadow-write.

In shadow-write a replica writes new's copy of each turn behind, and a replica that crashes
loses what it had queued with no journal entry (journaling every write first would cost
the caller what write-behind saves). A clean check made in shadow-write therefore says
nothing of turns acknowledged after it: the guard wants one started after the phase record
left shadow-write, and that check finds what a crash lost. Real SQLite stores, a real Redis
control store, a real replica process killed with SIGKILL, the real `dualsaver` command.
"""

from __future__ import annotations

import json
import subprocess
import sys

from dualsaver.control.phase import Phase
from dualsaver.control.record import open_control_store
from dualsaver.stores import open_saver
from tests.graphs import config
from tests.ops_support import REPO, cli_env, eventually, run_cli, sqlite_migration

# A replica: one acknowledged turn in shadow-write whose copy for new is stuck in the
# write-behind queue (new hangs), then it waits to be killed.
REPLICA = """
import sys, time
from dualsaver import DualSaver
from dualsaver.control.phase import Phase
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
    assert "Safe to switch reads: not yet: the stores agree, but when this check started the fleet was in shadow-write" in text, text

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
    with open_control_store(redis_url) as control:  # the killed replica's heartbeat (shadow-write) ages out
        eventually(lambda: not [r for r in control.replicas() if r.alive()], "the crashed replica counts as gone")
    code, text = cli("check")
    assert code == 0 and "Safe to switch reads: yes" in text, text
    code, text = cli("phase", "set", "read-switch")
    assert code == 0, text
    with open_saver(urls["new"]) as new:
        assert new.get_tuple(config("lost-in-a-crash")) is not None  # reads from new find the turn


def test_a_check_started_while_a_replica_still_wrote_behind_does_not_switch_reads(tmp_path, redis_url):
    """The record left shadow-write, but a replica had not followed yet (it reads the record
    once a poll interval, and `phase set` was not told to --wait): it still queued new's
    copies behind. A check started then does not count either; one started after it followed
    does. The replica here is its heartbeat in the real control store."""
    urls, _, cli = sqlite_migration(tmp_path, redis_url)
    with open_saver(urls["old"]), open_saver(urls["new"]):
        pass  # the tables
    assert cli("phase", "set", "shadow-write")[0] == 0
    assert cli("backfill")[0] == 0
    with open_control_store(redis_url) as control:
        control.heartbeat("slow-replica", Phase.SHADOW_WRITE, interval=60)  # alive, not following yet
        assert cli("phase", "set", "backfill")[0] == 0
        code, text = cli("check")
        assert code == 0, text
        assert ("Safe to switch reads: not yet: the stores agree, but when this check started 1 live replica(s)"
                " still reported shadow-write (slow-replica)") in text, text

        control.heartbeat("slow-replica", Phase.BACKFILL, interval=60)  # it follows
        code, text = cli("phase", "set", "read-switch")
        assert code == 1, text
        assert "when the last check started, 1 live replica(s) still reported shadow-write" in text, text
        code, text = cli("check")
        assert code == 0 and "Safe to switch reads: yes" in text, text
        code, text = cli("phase", "set", "read-switch")
        assert code == 0, text


def test_the_check_reads_the_phase_from_the_record_its_control_option_names(tmp_path, redis_url):
    """`--control` alone (no environment) names the record: it decides the primary the check
    reads last (it was read from the environment's settings only, so shadow-write's `old`)
    and what the check says of shadow-write. An unreachable one is one line, exit 2."""
    urls, _, _ = sqlite_migration(tmp_path, redis_url)
    with open_saver(urls["old"]), open_saver(urls["new"]):
        pass  # the tables
    env = cli_env()  # no DUALSAVER_* at all
    with open_control_store(redis_url) as control:
        control.set_phase(Phase.SHADOW_WRITE, expected_version=0, by="test")
        control.set_phase(Phase.BACKFILL, expected_version=1, by="test")
        control.set_phase(Phase.READ_SWITCH, expected_version=2, by="test", forced=True)

    def check(control: str) -> subprocess.CompletedProcess:
        return run_cli("check", "--old", urls["old"], "--new", urls["new"], "--control", control,
                       "--report", "r.json", cwd=tmp_path, env=env)

    done = check(redis_url)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["primary"] == "new"
    done = check("redis://127.0.0.1:1/0")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the phase decides which store is the primary: control store redis://127.0.0.1:1/0 is unreachable" in done.stderr
