"""Rolling back after decommission: what new gained comes back to old, and what was deleted
stays deleted.

In decommission old is retired and receives nothing. The reverse backfill copies what new
gained (insert-if-absent), but it cannot know what new lost: deletes made in decommission
are journaled as tombstones, and the repair from the journal applies them to old.
"""

from __future__ import annotations

import json
import re
import time

from dualsaver import DualSaver, Journal, Phase
from dualsaver.checker.findings import DivergenceReport
from dualsaver.cli.options import pair_of
from dualsaver.control.evidence import record_backfill, record_check
from dualsaver.control.settings import Settings
from dualsaver.migrate import BackfillResult
from dualsaver.stores import open_saver
from dualsaver.migrate import backfill
from dualsaver.migrate import repairs_from_journal, repair
from tests.graphs import build_agent, config, expected_results, run_turn
from tests.faulty import Faulty
from tests.ops_support import cli_env, run_cli, sqlite_migration
from tests.savers import sync_saver


def _move(saver: DualSaver, *phases: Phase) -> None:
    for phase in phases:
        saver.phase = phase


def test_a_delete_in_decommission_survives_the_rollback(tmp_path, pg_url_factory):
    journal = tmp_path / "journal.sqlite"
    # PostgreSQL on both sides: prune needs both savers to have it (SqliteSaver does not)
    with (
        sync_saver("postgres", pg_url=pg_url_factory()) as old,
        sync_saver("postgres", pg_url=pg_url_factory()) as new,
    ):
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=journal)
        app = build_agent(saver)
        for thread in ("kept", "deleted", "pruned"):
            run_turn(app, thread, "alpha")
        _move(saver, Phase.BACKFILL)
        assert backfill(old, new, state_path=tmp_path / "forward").failed == 0
        _move(saver, Phase.READ_SWITCH, Phase.DECOMMISSION)

        run_turn(app, "kept", "beta")  # new gains a checkpoint old never sees
        run_turn(app, "pruned", "beta")
        saver.delete_thread("deleted")
        saver.prune(["pruned"], strategy="keep_latest")
        assert old.get_tuple(config("deleted")) is not None  # retired: old still has it

        # The rollback, as the README tells it: reverse backfill, repair from the journal.
        assert backfill(new, old, state_path=tmp_path / "reverse").failed == 0
        pending = Journal(journal)
        entries = list(pending.pending())
        assert {(e.store, e.operation, e.thread_id) for e in entries} == {
            ("old", "delete_thread", "deleted"),
            ("old", "prune", "pruned"),
        }
        result = repair(new, old, repairs=repairs_from_journal(entries, source="new"), source_side="new")
        assert result.ok, result.summary()
        pending.close()
        _move(saver, Phase.READ_SWITCH, Phase.BACKFILL)

        assert saver.get_tuple(config("deleted")) is None  # not resurrected from old
        assert old.get_tuple(config("deleted")) is None
        assert saver.get_tuple(config("kept")).checkpoint["channel_values"]["results"] == expected_results(
            "alpha", "beta"
        )
        # old now holds exactly what new holds for the pruned thread: its latest checkpoints
        assert {t.checkpoint["id"] for t in old.list(config("pruned"))} == {
            t.checkpoint["id"] for t in new.list(config("pruned"))
        }
        final = run_turn(app, "kept", "gamma")  # and the agent carries on, on old again
        assert final["results"] == expected_results("alpha", "beta", "gamma")


# --------------------------------------------------------------------------- the guard of a move back


def _recorded_forward_evidence(control_url: str, urls: dict[str, str]) -> None:
    """A complete backfill and a clean check after it, of these stores, as the read-switch
    guard needs."""
    settings = Settings(control_url=control_url)
    with open_saver(urls["old"]) as old, open_saver(urls["new"]) as new:
        pair = pair_of(old, new)
    record_backfill(BackfillResult(threads=1, checkpoints=1, failed=0, finished_at=time.time()),
                    settings=settings, pair=pair)
    record_check(DivergenceReport(clean=True, divergences=[], summary={"duration_seconds": 0.0}),
                 settings=settings, pair=pair)


def test_a_move_back_waits_until_old_has_what_it_missed(tmp_path, redis_url):
    """read-switch -> backfill makes old answer reads again: a turn old missed (its write
    failed, journaled) would vanish from the conversation. The guard refuses until the
    journal's repair (source: new) brought it to old; then the move loses nothing."""
    urls, env, cli = sqlite_migration(tmp_path, redis_url)
    assert cli("phase", "set", "backfill")[0] == 0
    _recorded_forward_evidence(redis_url, urls)
    assert cli("phase", "set", "read-switch")[0] == 0
    with open_saver(urls["old"]) as old_store, open_saver(urls["new"]) as new_store:
        old = Faulty(old_store)
        with DualSaver(old, new_store, "read-switch", control=redis_url, journal=tmp_path / "spool.sqlite",
                       write_behind=False) as saver:
            app = build_agent(saver)
            run_turn(app, "t", "alpha")
            old.mode = "raise"  # old (the secondary in read-switch) misses the next turn
            run_turn(app, "t", "beta")
            old.mode = None
        assert old_store.get_tuple(config("t")).checkpoint["channel_values"]["results"] == expected_results("alpha")

    code, text = cli("phase", "set", "backfill", "--reason", "latency on new")
    assert code == 1, text
    assert "old missed" in text and "dualsaver repair --journal --phase read-switch" in text
    shown = json.loads(run_cli("phase", "show", "--json", cwd=tmp_path, env=env).stdout)
    assert shown["phase"] == "read-switch"  # not moved, and `phase show` says why
    assert "old missed" in shown["refused"]["backfill"]
    status = run_cli("status", cwd=tmp_path, env=env).stdout
    assert re.search(r"\(0 naming new, [1-9]\d* naming old: reads cannot move", status), status

    code, text = cli("repair", "--journal", "--phase", "read-switch")
    assert code == 0, text
    assert cli("phase", "set", "backfill", "--reason", "latency on new")[0] == 0
    with open_saver(urls["old"]) as old_store, open_saver(urls["new"]) as new_store:
        saver = DualSaver(old_store, new_store, "backfill", journal=tmp_path / "spool2.sqlite")
        state = build_agent(saver).get_state(config("t")).values
        assert state["results"] == expected_results("alpha", "beta")  # old answers, and lost nothing

    # Forward again: the clean check from before the switch says nothing of what new took and
    # lost while it was the primary.
    code, text = cli("phase", "set", "read-switch")
    assert code == 1 and "no check has started since reads moved back to old" in text, text
    assert cli("check")[0] == 0
    assert cli("phase", "set", "read-switch")[0] == 0


def test_leaving_decommission_waits_for_its_deletes_to_reach_old(tmp_path, redis_url):
    """After decommission, read-switch answers a miss from old and copies the thread back:
    a conversation deleted in decommission (old retired, the delete journaled as a tombstone)
    would come back. The reverse backfill only adds, so the guard also waits for the
    journal's repair, which applies the delete to old."""
    urls, _, cli = sqlite_migration(tmp_path, redis_url)
    with open_saver(urls["old"]) as old_store, open_saver(urls["new"]) as new_store:
        with DualSaver(old_store, new_store, "shadow-write", control=redis_url, journal=tmp_path / "spool.sqlite",
                       write_behind=False) as saver:
            app = build_agent(saver)
            run_turn(app, "kept", "alpha")
            run_turn(app, "deleted", "alpha")
            for phase in ("backfill", "read-switch", "decommission"):
                if phase == "read-switch":
                    _recorded_forward_evidence(redis_url, urls)
                assert cli("phase", "set", phase)[0] == 0
                saver.phase = Phase(phase)
            saver.delete_thread("deleted")  # new only: old is retired
        assert old_store.get_tuple(config("deleted")) is not None

    code, text = cli("backfill")  # a forward backfill now would bring the deleted conversation back into new
    assert code == 2 and "old is retired in decommission" in text, text
    with open_saver(urls["new"]) as new_store:
        assert new_store.get_tuple(config("deleted")) is None
    assert cli("backfill", "--reverse")[0] == 0
    code, text = cli("phase", "set", "read-switch", "--reason", "rollback")
    assert code == 1, text
    assert "old missed" in text and "dualsaver repair --journal --phase decommission" in text

    code, text = cli("repair", "--journal", "--phase", "decommission")
    assert code == 0, text
    assert cli("phase", "set", "read-switch", "--reason", "rollback")[0] == 0
    with open_saver(urls["old"]) as old_store, open_saver(urls["new"]) as new_store:
        saver = DualSaver(old_store, new_store, "read-switch", journal=tmp_path / "spool2.sqlite")
        assert saver.get_tuple(config("deleted")) is None  # not answered from old, not copied back
        assert saver.get_tuple(config("kept")) is not None
        assert new_store.get_tuple(config("deleted")) is None


def test_decommission_waits_until_new_has_what_a_failed_lazy_copy_left_in_old(tmp_path, redis_url):
    """In read-switch a read that new misses is answered by old and its thread copied into
    new; when that copy fails it is journaled. Decommission would retire old, the only
    store holding that thread: refused until the repair copied it."""
    urls, _, cli = sqlite_migration(tmp_path, redis_url)
    with open_saver(urls["old"]) as old_store, open_saver(urls["new"]) as new_store:
        run_turn(build_agent(old_store), "only-in-old", "alpha")  # a thread the backfill never saw
        assert cli("phase", "set", "backfill")[0] == 0
        _recorded_forward_evidence(redis_url, urls)
        assert cli("phase", "set", "read-switch")[0] == 0
        new = Faulty(new_store)
        with DualSaver(old_store, new, "read-switch", control=redis_url, journal=tmp_path / "spool.sqlite",
                       circuit_cool_down=None) as saver:
            new.mode = "raise"
            assert saver.get_tuple(config("only-in-old")) is not None  # answered by old; its copy fails
        assert new_store.get_tuple(config("only-in-old")) is None

    code, text = cli("phase", "set", "decommission")
    assert code == 1, text
    assert "cannot decommission" in text and "old, about to be retired, holds the only copy" in text
    code, text = cli("repair", "--journal", "--phase", "read-switch", "--source", "old", "--force")
    assert code == 0, text
    assert cli("phase", "set", "decommission")[0] == 0
    with open_saver(urls["new"]) as new_store:
        assert new_store.get_tuple(config("only-in-old")) is not None


def test_a_reverse_backfill_refuses_to_copy_into_old_while_old_is_the_primary(tmp_path):
    """In shadow-write and backfill old is the source of truth: a reverse backfill (new -> old,
    insert-if-absent) would bring back into it a conversation deleted there whose delete new
    missed. It is for leaving decommission; the phase it runs in is named or forced."""
    urls = {side: f"sqlite:///{tmp_path / f'{side}.sqlite'}" for side in ("old", "new")}
    env = cli_env(DUALSAVER_OLD_URL=urls["old"], DUALSAVER_NEW_URL=urls["new"])
    with open_saver(urls["old"]) as old_store, open_saver(urls["new"]) as new_store:
        new = Faulty(new_store)
        with DualSaver(old_store, new, "shadow-write", journal=tmp_path / "j.sqlite", write_behind=False,
                       circuit_cool_down=None) as saver:
            run_turn(build_agent(saver), "deleted", "alpha")
            new.mode = "raise"
            saver.delete_thread("deleted")  # old deletes it; new misses the delete (journaled)
        assert old_store.get_tuple(config("deleted")) is None and new_store.get_tuple(config("deleted")) is not None

    for phase in ("shadow-write", "backfill"):
        done = run_cli("backfill", "--reverse", "--no-progress", *(["--phase", phase] if phase != "shadow-write" else []),
                       cwd=tmp_path, env=env)
        assert done.returncode == 2, done.stderr
        assert f"old, the primary in {phase}" in done.stderr and "would come back" in done.stderr
    with open_saver(urls["old"]) as old_store:
        assert old_store.get_tuple(config("deleted")) is None  # nothing came back

    done = run_cli("backfill", "--reverse", "--no-progress", "--phase", "decommission", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr  # leaving decommission: new is the truth, old gets what it lacks
