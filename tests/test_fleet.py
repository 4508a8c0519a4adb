"""A fleet of replicas (separate processes) follows the shared phase record through every
phase while each runs real graph turns; at the end nothing acknowledged is lost.

Old is a real SQLite file shared by every replica, new a real PostgreSQL database, the
record lives in PostgreSQL or in Redis. Phases change only through `dualsaver phase set`;
the backfill and the check run for real, beside the live traffic, before reads switch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dualsaver.control import evidence as migration_status
from dualsaver.migrate import backfill
from dualsaver.checker import check
from dualsaver.demo.app import build_support_agent, say
from dualsaver.control.record import open_phase_record
from dualsaver.control.settings import Settings
from dualsaver.stores import native_for, open_saver
from tests.ops_support import REPO, cli_env, eventually, run_cli

REPLICAS = 3
LEGACY_THREADS = 4  # conversations that exist only in old before the migration starts
TURNS_PER_PHASE = 2  # acknowledged turns each replica must run in each phase


def _acks(out: Path) -> dict[int, list[dict]]:
    found = {}
    for i in range(REPLICAS):
        path = out / f"acks-{i}.jsonl"
        found[i] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return found


def _errors(out: Path) -> list[str]:
    lines = []
    for path in out.glob("errors-*.jsonl"):
        lines += path.read_text().splitlines()
    return lines


def _wait_for_turns(out: Path, phase: str) -> None:
    """Every replica acknowledged TURNS_PER_PHASE turns that ran in `phase`."""

    def enough() -> bool:
        assert not _errors(out), _errors(out)
        acks = _acks(out)
        return all(sum(a["phase"] == phase for a in acks[i]) >= TURNS_PER_PHASE for i in range(REPLICAS))

    eventually(enough, f"{TURNS_PER_PHASE} acknowledged turns per replica in {phase}", timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("record_kind", ["postgres", "redis"])
def test_fleet_walks_every_phase_without_losing_a_turn(record_kind, tmp_path, pg_url_factory, request):
    new_url = pg_url_factory()
    record_url = pg_url_factory() if record_kind == "postgres" else request.getfixturevalue("redis_url")
    old_url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    out = tmp_path / "fleet"
    out.mkdir()
    env = cli_env(DUALSAVER_PHASE_RECORD=record_url)

    # History the new store never saw, and both stores' tables, before any replica starts.
    with open_saver(old_url) as old, open_saver(new_url):
        app = build_support_agent(old)
        for k in range(LEGACY_THREADS):
            say(app, f"legacy-{k}", "Where is my order shipment today?")
            say(app, f"legacy-{k}", "Thanks, close the ticket")
    assert run_cli("phase", "set", "shadow-write", "--reason", "start", env=env, cwd=tmp_path).returncode == 0

    replica_env = cli_env(FLEET_OLD_URL=old_url, FLEET_NEW_URL=new_url, FLEET_RECORD_URL=record_url)
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_replica", str(i), str(out)],
            cwd=REPO, env=replica_env, stdout=subprocess.DEVNULL,
            stderr=(out / f"stderr-{i}.txt").open("w"),
        )
        for i in range(REPLICAS)
    ]
    try:
        with open_phase_record(record_url) as record:
            eventually(lambda: len([r for r in record.replicas() if r.alive()]) == REPLICAS, "every replica reports")
        _wait_for_turns(out, "shadow-write")

        def phase_set(target: str, *extra: str) -> subprocess.CompletedProcess:
            return run_cli("phase", "set", target, "--wait", "120", *extra, env=env, cwd=tmp_path)

        done = phase_set("backfill")
        assert done.returncode == 0, done.stderr
        assert f"{REPLICAS} live replica(s) report backfill" in done.stdout
        _wait_for_turns(out, "backfill")

        refused = phase_set("read-switch")
        assert refused.returncode == 1 and "no backfill has been recorded" in refused.stderr

        # The real backfill and check, beside the live traffic, recorded where the guard looks.
        settings = Settings(record_url=record_url)
        with open_saver(old_url) as old, open_saver(new_url) as new:
            copied = backfill(old, new, state_path=tmp_path / "backfill.sqlite")
            assert copied.failed == 0 and copied.checkpoints > 0  # the legacy history at least
            assert migration_status.record_backfill(copied, settings=settings)
            report = check(native_for(old), native_for(new), primary="old")
            assert report.clean, report.to_json()
            assert migration_status.record_check(report, settings=settings)

        done = phase_set("read-switch", "--reason", "backfill and check clean")
        assert done.returncode == 0, done.stderr
        _wait_for_turns(out, "read-switch")
        done = phase_set("decommission")
        assert done.returncode == 0, done.stderr
        _wait_for_turns(out, "decommission")

        refused = phase_set("read-switch")
        assert refused.returncode == 1 and "reverse backfill" in refused.stderr
    finally:
        (out / "stop").touch()
        for p in replicas:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert [p.returncode for p in replicas] == [0] * REPLICAS, [
        (out / f"stderr-{i}.txt").read_text()[-2000:] for i in range(REPLICAS)
    ]
    assert _errors(out) == []

    # Nothing lost: every acknowledged turn's checkpoint is in new, and every conversation
    # holds exactly two messages per acknowledged turn.
    acks = _acks(out)
    turns: Counter[str] = Counter()
    with open_saver(new_url) as new:
        app = build_support_agent(new)
        for i in range(REPLICAS):
            phases_seen = [a["phase"] for a in acks[i]]
            order = ["shadow-write", "backfill", "read-switch", "decommission"]
            assert phases_seen == sorted(phases_seen, key=order.index)  # the fleet only moved forward
            for a in acks[i]:
                turns[a["thread"]] += 1
                assert a["messages"] == 2 * turns[a["thread"]], a  # no turn forgot an earlier one
                config = {"configurable": {"thread_id": a["thread"], "checkpoint_ns": "", "checkpoint_id": a["checkpoint_id"]}}
                assert new.get_tuple(config) is not None, f"acknowledged checkpoint missing in new: {a}"
        for thread_id, count in turns.items():
            state = app.get_state({"configurable": {"thread_id": thread_id}})
            assert len(state.values["messages"]) == 2 * count, thread_id
        for k in range(LEGACY_THREADS):
            state = app.get_state({"configurable": {"thread_id": f"legacy-{k}"}})
            assert len(state.values["messages"]) == 4

    with open_phase_record(record_url) as record:
        steps = [(t.from_phase, t.to_phase) for t in record.history()]
        assert steps == [
            (None, "shadow-write"), ("shadow-write", "backfill"), ("backfill", "read-switch"),
            ("read-switch", "decommission"),
        ]
        assert [r for r in record.replicas() if r.alive()] == []  # replicas left cleanly

    # Each replica logged every phase change it followed, as JSON, without the passwords.
    secrets = [p for p in (_password(new_url), _password(record_url)) if p]
    for i in range(REPLICAS):
        log_text = (out / f"replica-{i}.log").read_text()
        changes = [json.loads(line) for line in log_text.splitlines() if '"phase_changed"' in line]
        assert [(c["previous"], c["phase"]) for c in changes if "previous" in c] == [
            ("shadow-write", "backfill"), ("backfill", "read-switch"), ("read-switch", "decommission"),
        ]
        for secret in secrets:
            assert secret not in log_text and secret not in (out / f"stderr-{i}.txt").read_text()


def _password(url: str) -> str | None:
    from dualsaver.stores.urls import password_of

    return password_of(url)

