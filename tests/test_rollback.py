"""Rolling back after decommission: what new gained comes back to old, and what was deleted
stays deleted.

In decommission old is retired and receives nothing. The reverse backfill copies what new
gained (insert-if-absent), but it cannot know what new lost: deletes made in decommission
are journaled as tombstones, and the repair from the journal applies them to old.
"""

from __future__ import annotations

from dualsaver import DualSaver, Journal, Phase
from dualsaver.migrate import backfill
from dualsaver.migrate import repairs_from_journal, repair
from tests.graphs import build_agent, config, expected_results, run_turn
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
