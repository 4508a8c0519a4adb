"""`dualsaver repair`: copy what a check report or the journal names again, then re-check it.

Exit codes: 0 repaired and the re-check is clean (or a dry run), 1 something is still
divergent or failed, 2 could not run (bad URL, unreadable report, missing journal).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dualsaver.cli.check import primary_for_run
from dualsaver.cli.options import (
    add_command, add_control_argument, add_store_arguments, add_throttle_arguments, crossed_pair, paired, settings_for,
    throttle_from,
)
from dualsaver.cli.store_items import add_store_item_arguments
from dualsaver.stores.serde import serde_from_name

if TYPE_CHECKING:
    from dualsaver.saver.routing import Role

EPILOG = """\
examples:
  # repair what a check found, from the phase's source of truth, then re-check those threads
  dualsaver check  --old sqlite:///app.sqlite --new postgresql://app@db/app --report check.json
  dualsaver repair --old sqlite:///app.sqlite --new postgresql://app@db/app --report check.json

  # redo the secondary writes that failed: the whole fleet's, from the control store
  dualsaver repair --old ... --new ... --journal --control postgresql://ops@db/control

  # or one machine's local journal
  dualsaver repair --old ... --new ... --journal .dualsaver/journal.sqlite

  # see what it would do first
  dualsaver repair --old ... --new ... --report check.json --dry-run

What it does per thread: rows missing in the target are inserted (never overwriting); a
thread whose target copy is wrong (a mismatch, an extra or unreadable row) is deleted on
the target and copied again whole. The source defaults to the phase's primary (old in
shadow-write and backfill, new from read-switch on); repairing the primary itself needs
--force, because deleting there under live traffic could lose acknowledged writes.

exit status: 0 repaired (re-check clean), 1 still divergent or failed, 2 could not run.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "repair",
        help="copy the threads a report or the journal names again, then re-check them",
        description=(
            "Copy again, from the source of truth, every thread a check report or the"
            " secondary-failure journal names; then check those threads."
        ),
        epilog=EPILOG,
    )
    add_store_arguments(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--report", metavar="PATH", help="a JSON report written by dualsaver check")
    what.add_argument(
        "--journal", metavar="PATH", nargs="?", const="",
        help="the secondary-failure journal: with no PATH, the whole fleet's in the control store (--control,"
        " control.url, $DUALSAVER_CONTROL_URL), else the local one (.dualsaver/journal.sqlite)",
    )
    p.add_argument(
        "--source",
        choices=("old", "new"),
        help="the store to copy from (default: the phase's primary)",
    )
    p.add_argument("--phase", help="the migration phase (default: $DUALSAVER_PHASE, else the settings file, else"
                   " the control store's record, else shadow-write); its primary is the source of truth")
    p.add_argument("--dry-run", action="store_true", help="show what would be done and the counts; change nothing")
    p.add_argument("--force", action="store_true", help="allow repairing the phase's primary store")
    p.add_argument("--no-verify", action="store_true", help="skip the re-check of repaired threads")
    add_throttle_arguments(p)
    add_control_argument(p)
    add_store_item_arguments(p)
    p.set_defaults(func=run)


def fail(message: str) -> int:
    print(f"dualsaver repair: cannot repair: {message}", file=sys.stderr)
    return 2


def _load_repairs(args: argparse.Namespace, source: Role, primary: Role) -> tuple[list, Any, list]:
    """(repairs, journal or None, pending entries)"""
    from dualsaver.checker.findings import DivergenceReport
    from dualsaver.migrate import repairs_from_journal, repairs_from_report

    if args.report:
        report = DivergenceReport.from_json(Path(args.report).read_text(encoding="utf-8"))
        if (why := _swapped(report, args.old, args.new) or _other_primary(report, primary, args)) is not None:
            raise ValueError(why)
        return repairs_from_report(report, source), None, []
    journal = _open_journal(args)
    entries = list(journal.pending())
    return repairs_from_journal(entries, source), journal, entries


def _other_primary(report: Any, primary: Role, args: argparse.Namespace) -> str | None:
    """Why a report is not repaired in this phase, or None: it was made while the other store
    was the primary, so its findings read the other way round here (what only the store
    written first held then, the writes the other missed, would be deleted from it). With
    --source the operator chose the direction."""
    made = report.summary.get("primary")
    if args.source or made not in ("old", "new") or made == primary:
        return None
    other = "new" if primary == "old" else "old"
    return (f"the report was made while {made} was the primary, but this repair's phase makes {primary} the"
            f" primary: it would copy from {primary} and delete from {other} what only {other} holds. Pass the"
            " phase the check ran in (--phase, $DUALSAVER_PHASE or the control store), or check again in this"
            " phase (--source chooses the direction yourself)")


def _swapped(report: Any, old_url: str, new_url: str, *, items: bool = False) -> str | None:
    """Why a report's stores are this repair's the other way round, or None. A repair from
    such a report would make the old store, the source of truth, match the new one: its
    differing threads replaced by the new store's copies, items the new store lacks deleted.
    `items`: the long-term stores (`item_stores` in a report of both halves)."""
    from dualsaver.stores import redact

    named = (items and report.summary.get("item_stores")) or report.summary.get("stores") or {}
    old, new = redact(old_url), redact(new_url)
    if old != new and named.get("old") == new and named.get("new") == old:
        return (f"the report was made with --old {new} and --new {old}, the other way round: pass them"
                " as the check did (--source chooses which store a repair copies from)")
    return None


def _open_journal(args: argparse.Namespace) -> Any:
    """The journal named by --journal PATH; with no PATH, the fleet's (when a control store is
    configured: every replica's entries, marked repaired once whoever repairs) or the local one."""
    from dualsaver.control.fleet_journal import FleetJournal
    from dualsaver.control.journal import Journal, journal_path
    from dualsaver.control.record import open_phase_record
    from dualsaver.control.sources import replica_name

    settings = settings_for(args)
    if not args.journal and settings.control_url:
        record = open_phase_record(settings.control_url, name=settings.record_name)
        return FleetJournal(record, Journal(":memory:"), replica_name())
    path = journal_path(args.journal or settings.journal)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"no journal at {path}")
    return Journal(path)


def run(args: argparse.Namespace) -> int:
    """Repair the checkpoints, the long-term store's items, or both (whichever pairs are named)."""
    from dualsaver.cli import store_items

    try:
        items = store_items.store_pair(args)
    except ValueError as exc:
        return fail(str(exc))
    code = 0
    if items is None or store_items.has_checkpoint_pair(args):
        code = _run_checkpoints(args)
        if code == 2 or items is None:
            return code
    return max(code, _run_store(args, items))


def _run_store(args: argparse.Namespace, items: tuple[str, str]) -> int:
    from dualsaver.checker.findings import DivergenceReport
    from dualsaver.cli.check import primary_of
    from dualsaver.cli import store_items

    try:
        primary = primary_of(args)
        source = args.source or primary
        if source != primary and not args.force and not args.dry_run:
            return fail(f"the {'new' if source == 'old' else 'old'} store is the primary in this phase; pass --force")
        report, entries, journal = None, [], None
        if args.report:
            report = DivergenceReport.from_json(Path(args.report).read_text(encoding="utf-8"))
            if (why := _swapped(report, *items, items=True) or _other_primary(report, primary, args)) is not None:
                return fail(f"store: {why}")
            report = report.part(items=True)
        else:
            journal = args._journal = _open_journal(args)
            entries = list(journal.pending())
    except (OSError, ValueError, KeyError) as exc:
        return fail(f"{type(exc).__name__}: {exc}")
    try:
        return store_items.repair(args, items, source, report, entries)
    except Exception as exc:
        return fail(f"store: {store_items.error_text(exc, items)}")
    finally:
        if journal is not None:
            journal.close()


def _run_checkpoints(args: argparse.Namespace) -> int:
    from dualsaver.checker import CheckError, check
    from dualsaver.control.evidence import CHECKPOINT_RUNS
    from dualsaver.migrate import other, repair, entries_to_mark
    from dualsaver.errors import SameStore
    from dualsaver.stores import StoreURLError, open_saver, redact

    try:
        primary = primary_for_run(args)
    except ValueError as exc:
        return fail(str(exc))
    source = args.source or primary
    target = other(source)
    if source != primary and not args.force and not args.dry_run:
        return fail(
            f"the {target} store is the primary in this phase; repairing it under live traffic"
            " can lose acknowledged writes. Stop the traffic and pass --force, or use"
            f" --source {target}."
        )
    try:
        repairs, journal, entries = _load_repairs(args, source, primary)
        old_serde, new_serde = serde_from_name(args.old_serde), serde_from_name(args.new_serde)
    except (OSError, ValueError, KeyError) as exc:
        return fail(f"{type(exc).__name__}: {exc}")

    urls = {"old": args.old, "new": args.new}
    serdes = {"old": old_serde, "new": new_serde}
    if not repairs:
        print("Nothing to repair: no affected thread" + (" pending in the journal." if journal else " in the report."))
        return 0
    try:
        with open_saver(urls[source], must_exist=True, serde=serdes[source]) as source_saver, open_saver(
            urls[target], serde=serdes[target]
        ) as target_saver:
            stores = {source: source_saver, target: target_saver}
            pair = paired(stores["old"], stores["new"], "a repair")  # it would delete what it is to copy
            if (why := crossed_pair(settings_for(args), pair, CHECKPOINT_RUNS, ("--old", "--new"))) is not None:
                return fail(why)
            for thread in repairs:
                print(f"  {thread.action:7} {thread.thread_id}: {'; '.join(thread.reasons[:3])}"
                      + (" ..." if len(thread.reasons) > 3 else ""))
            options = {"dry_run": args.dry_run, "source_side": source, "throttle": throttle_from(args)}
            result = repair(source_saver, target_saver, repairs=repairs, **options)
            print(result.summary())
            if args.dry_run:
                return 0
            if journal is not None:
                marked = entries_to_mark(entries, result.repaired_threads, target)
                print(f"journal: {journal.mark_repaired(marked)} entr(ies) marked repaired")
            if args.no_verify:
                return 0 if result.ok else 1
            threads = [r.thread_id for r in repairs]
            report = check(
                stores["old"], stores["new"], thread_ids=threads, primary=primary,
                old_name=redact(args.old), new_name=redact(args.new),
            )
    except (StoreURLError, SameStore) as exc:
        return fail(str(exc))
    except CheckError as exc:
        return fail(str(exc))
    finally:
        if journal is not None:
            journal.close()
    if report.clean:
        print(f"re-check of {len(repairs)} thread(s): clean")
        return 0 if result.ok else 1
    counts = ", ".join(f"{k} {v}" for k, v in report.counts().items() if v)
    print(f"re-check of {len(repairs)} thread(s): still divergent ({counts})")
    print(json.dumps([d.to_dict() for d in report.divergences[:5]], indent=1, default=str))
    return 1
