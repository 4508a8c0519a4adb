"""Repair turns a divergent pair clean, from a report or the journal, and never deletes the only
good copy of a row."""

from __future__ import annotations

from dualsaver.checker import acheck, check
from dualsaver.checker.findings import Divergence, DivergenceReport
from dualsaver.control.journal import JournalEntry
from dualsaver.migrate import arepair, repairs_for_threads, repairs_from_journal, repairs_from_report, repair
from dualsaver.stores import aopen_saver, open_saver
from tests import check_support as cs

THREADS = ["t-a", "t-b", "t-c", "t-d"]


def _report(*divergences: Divergence) -> DivergenceReport:
    return DivergenceReport(clean=not divergences, divergences=list(divergences), summary={})


def test_plans_say_what_each_thread_needs():
    plans = repairs_from_report(
        _report(
            Divergence("missing_in_new", "a", "", "1"),
            Divergence("missing_in_old", "b", "", "1"),
            Divergence("checkpoint_mismatch", "c", "", "1"),
            Divergence("unreadable", "d", "", "1", {"side": "new"}),
            Divergence("unreadable", "e", "", "1", {"side": "old"}),
            Divergence("writes_mismatch", "e", "", "2"),
        ),
        source="old",
    )
    actions = {p.thread_id: p.action for p in plans}
    assert actions == {"a": "copy", "b": "replace", "c": "replace", "d": "replace", "e": "copy"}
    assert [p.thread_id for p in plans if p.attention] == ["e"]  # never delete the only copy
    # from read-switch on, new is the source: rows missing in old are copied, not replaced
    reverse = {p.thread_id: p.action for p in repairs_from_report(_report(
        Divergence("missing_in_old", "b", "", "1")), source="new")}
    assert reverse == {"b": "copy"}
    # ... and rows only old holds are never deleted from it: named once a thread, for attention
    (kept,) = repairs_from_report(_report(
        Divergence("missing_in_new", "f", "", "1"), Divergence("missing_in_new", "f", "", "2"),
        Divergence("checkpoint_mismatch", "f", "", "3")), source="new")
    assert kept.action == "copy" and len(kept.attention) == 1 and "backfill --thread f" in kept.attention[0]
    journal = repairs_from_journal(
        [
            JournalEntry("shadow-write", "new", "put_writes", "x", "", "1", "task", "err"),
            JournalEntry("shadow-write", "new", "delete_thread", "y", None, None, None, "err"),
            JournalEntry("read-switch", "old", "put", "z", "", "1", None, "err"),
        ],
        source="old",
    )
    assert {p.thread_id: p.action for p in journal} == {"x": "copy", "y": "replace"}
    assert [p.action for p in repairs_for_threads(["q", "q"], replace=True)] == ["replace"]


def _plant_every_kind(old, new, sqlite_path) -> None:
    """Divergences of every kind, all on the new store's side or the old's missing rows."""
    cs.rewrite_thread(new, "t-a", lambda r: cs.drop(r, 1))  # missing_in_new
    cs.rewrite_thread(new, "t-b", lambda r: [cs.with_metadata(r[0]), cs.with_checkpoint(r[1], "parent"),
                                            cs.with_writes(r[2], "value"), *r[3:]])
    cs.rewrite_thread(new, "t-c", lambda r: [*r, cs.extra_checkpoint(r[-1])])  # missing_in_old


def test_repair_from_a_report_makes_the_pair_clean(pg_url, sqlite_path):
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(
        pg_url, serde=cs.encrypted_serde()
    ) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        _plant_every_kind(old, new, sqlite_path)
        report = check(old, new, backoff=(0,))
        assert {d.kind for d in report.divergences} == {
            "missing_in_new", "missing_in_old", "checkpoint_mismatch", "metadata_mismatch",
            "writes_mismatch",
        }
        dry = repair(old, new, repairs=repairs_from_report(report), dry_run=True)
        assert dry.ok and check(old, new, backoff=(0,)).to_dict()["divergences"] == report.to_dict()["divergences"]

        result = repair(old, new, repairs=repairs_from_report(report))
        assert result.ok, result.summary()
        assert {o.thread_id: o.action for o in result.outcomes} == {
            "t-a": "copy", "t-b": "replace", "t-c": "replace",
        }
        after = check(old, new, backoff=(0,))
        assert after.clean, after.to_json()


def test_a_row_unreadable_in_the_source_keeps_the_targets_copy(sqlite_path, tmp_path):
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(
        f"sqlite:///{tmp_path / 'new.sqlite'}"
    ) as new:
        cs.populate(old, ["t-a"])
        cs.clone(old, new)
        bad = cs.items(old, "t-a")[2]
        cs.corrupt_sqlite(str(sqlite_path), "t-a", bad.checkpoint_ns, bad.checkpoint_id)
        cs.rewrite_thread(new, "t-a", lambda r: cs.drop(r, 5))  # and one row new lacks
        report = check(old, new, backoff=(0,))
        result = repair(old, new, repairs=repairs_from_report(report))
        assert result.outcomes[0].action == "copy" and result.outcomes[0].attention
        assert "needs attention: t-a" in result.summary()
        kept = {(r.checkpoint_ns, r.checkpoint_id) for r in cs.items(new, "t-a")}
        assert (bad.checkpoint_ns, bad.checkpoint_id) in kept  # the only good copy survived
        left = check(old, new, backoff=(0,))
        assert [d.kind for d in left.divergences] == ["unreadable"]  # the rest was repaired


async def test_async_repair(pg_url, sqlite_path):
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(pg_url) as new:
        cs.populate(old, THREADS[:2])
        cs.clone(old, new)
        cs.rewrite_thread(new, "t-a", lambda r: [cs.with_metadata(r[0]), *r[2:]])
    async with aopen_saver(f"sqlite:///{sqlite_path}") as aold, aopen_saver(pg_url) as anew:
        report = await acheck(aold, anew, backoff=(0,))
        assert {d.kind for d in report.divergences} == {"metadata_mismatch", "missing_in_new"}
        result = await arepair(aold, anew, repairs=repairs_from_report(report))
        assert result.ok, result.summary()
        assert (await acheck(aold, anew, backoff=(0,))).clean
