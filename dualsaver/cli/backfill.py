"""`dualsaver backfill`: copy the history the new store never saw (or, reversed, back to old)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dualsaver.cli.options import (
    BACKFILL_REMEDY, add_command, add_control_argument, add_store_arguments, add_throttle_arguments, crossed_pair,
    name_stores, paired, parse_shard, positive, settings_for, throttle_from,
)
from dualsaver.cli.store_items import add_store_item_arguments
from dualsaver.preflight.rules import parse_classes
from dualsaver.stores.serde import serde_from_name

EXAMPLES = """\
examples:
  # copy everything old has and new lacks; safe beside live shadow-write traffic
  dualsaver backfill --old sqlite:///checkpoints.sqlite --new postgresql://app@db/app

  # four machines share the work (shards 0/4 .. 3/4), two workers each
  dualsaver backfill --old ... --new ... --shard 0/4 --workers 2

  # one machine, every core: the copy in 4 processes, one job (resumes whatever N)
  dualsaver backfill --old ... --new ... --processes 4

  # what would be copied, without writing
  dualsaver backfill --old ... --new ... --dry-run

  # just these threads; start over instead of resuming
  dualsaver backfill --old ... --new ... --thread t-1 --thread t-2 --restart

  # rollback after decommission: copy new -> old (refused while old is the primary;
  # a forward backfill is refused in decommission, where old is retired)
  dualsaver backfill --old ... --new ... --reverse --phase decommission

  # the long-term store (BaseStore) too: its items, times, TTLs and vectors, exactly
  dualsaver backfill --old ... --new ... --store-old sqlite:///store.sqlite --store-new postgresql://app@db/app

  # move to an encrypted store (values are decoded and re-encoded; AES key from the env)
  LANGGRAPH_AES_KEY=... dualsaver backfill --old ... --new ... --new-serde encrypted

When both stores use the same serializer configuration (the default), stored value bytes
are copied unchanged instead of being decoded and re-encoded.

Killed or interrupted, the same command resumes where it stopped (progress is kept in
.dualsaver/backfill.sqlite, per pair of stores and shard).

Before copying, the source is scanned for what the target cannot hold faithfully (as
`dualsaver preflight` does); anything found stops the backfill, listed, unless
--allow-lossy names its classes (then the result names every thread it changed).

A bad row (a checkpoint that is not a mapping, an unknown type tag, truncated msgpack, a
row the target refuses) is reported as unreadable with its thread, namespace and checkpoint
id; the rest of its thread is copied, every other thread too, and the thread is reported
failed on every run until the row is fixed or the thread repaired.

exit status: 0 done, 1 refused by the preflight, or partial (threads failed or rows unreadable: listed in the summary;
run again to retry them), 2 could not run.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "backfill",
        help="copy old's history into new (exact, resumable, safe beside live traffic)",
        description=(
            "Copy every checkpoint, subgraph namespace and pending write (with its task path"
            " and order) that the new store lacks. Never overwrites what is there."
        ),
        epilog=EXAMPLES,
    )
    add_store_arguments(p)
    p.add_argument("--workers", type=positive, default=1, metavar="N", help="threads copied at once")
    p.add_argument("--shard", type=parse_shard, metavar="I/N", help="only shard I (0-based) of N")
    p.add_argument("--processes", type=positive, metavar="N",
                   help="copy in N processes (one per core): one job, one progress bar, one result;"
                   " --workers is per process, --max-rate the whole job's; not with --shard")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", default=True, help="continue (default)")
    mode.add_argument("--restart", action="store_true", help="forget earlier progress")
    p.add_argument("--dry-run", action="store_true", help="count what would be copied; write nothing")
    p.add_argument("--thread", action="append", dest="threads", metavar="ID", help="only this thread (repeatable)")
    p.add_argument("--reverse", action="store_true", help="copy new -> old (rollback after decommission)")
    p.add_argument("--phase", help="the migration phase: a backfill refuses decommission (old is retired), --reverse"
                   " needs read-switch or decommission (default: $DUALSAVER_PHASE, else the settings, else the"
                   " control store's record)")
    p.add_argument("--force", action="store_true",
                   help="copy even so: into new in decommission, or (--reverse) into old while it is the primary")
    p.add_argument("--state", metavar="PATH", help="progress file (default .dualsaver/backfill.sqlite)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-lossy", metavar="CLASS[,CLASS]",
                   help="accept what the preflight finds in these rule classes (the result names what changed);"
                   " see `dualsaver preflight --rules`. For --store-old/--store-new, `non-finite` lets the"
                   " items' NaN and Infinity be written as null")
    p.add_argument("--no-preflight", action="store_true",
                   help="skip the scan before the copy (rows the target cannot hold are still refused one by one)")
    add_throttle_arguments(p)
    add_control_argument(p)
    add_store_item_arguments(p)
    p.set_defaults(func=run)


class TqdmProgress:
    """A progress bar on stderr: threads done, rate, ETA, checkpoints and writes added."""

    def __init__(self, label: str, throttle: Any = None) -> None:
        self.label = label
        self.throttle = throttle  # its reason, when the job waits, goes on the bar
        self.bar: Any = None
        self.checkpoints = self.writes = self.failed = 0

    def start(self, total: int | None, already_done: int) -> None:
        from tqdm import tqdm

        initial = min(already_done, total) if total is not None else already_done
        self.bar = tqdm(
            total=total, initial=initial, unit="thread", desc=self.label, file=sys.stderr,
            dynamic_ncols=True, smoothing=0.05,
        )

    def advance(self, thread_id: str, status: str, checkpoints: int, writes: int) -> None:
        self.checkpoints += checkpoints
        self.writes += writes
        self.failed += status != "ok"
        if self.bar is not None:
            reason = getattr(self.throttle, "reason", None)
            self.bar.set_postfix(
                checkpoints=self.checkpoints, writes=self.writes, failed=self.failed,
                **({"throttled": reason} if reason else {}), refresh=False,
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    """The checkpoints' backfill, the long-term store's, or both (whichever pairs are named)."""
    from dualsaver.cli import store_items

    try:
        items = store_items.store_pair(args)
    except ValueError as exc:
        print(f"dualsaver backfill: {exc}", file=sys.stderr)
        return 2
    if (why := _into_truth(args)) is not None:
        print(f"dualsaver backfill: {why}", file=sys.stderr)
        return 2
    code, result = 0, None
    if items is None or store_items.has_checkpoint_pair(args):
        code, result = _run_checkpoints(args)
        if code == 2 or code == 130:
            return code
    if items is not None:
        try:
            store_code, store_result = store_items.backfill(args, items, throttle_from(args))
        except Exception as exc:  # one line, never a traceback, never a password
            print(f"dualsaver backfill: store: could not run: {store_items.error_text(exc, items)}", file=sys.stderr)
            return 2
        code = max(code, store_code)
        result = {**(result or {}), "store": store_result}
    if args.json:
        print(json.dumps(result, default=str))
    return code


def _into_truth(args: argparse.Namespace) -> str | None:
    """Why this backfill must not run in the phase in force, or None. A backfill copies into
    its target whatever the source holds that the target lacks: into old while old is the
    primary (--reverse in shadow-write or backfill), or into new once old is retired
    (decommission), that is a conversation or item deleted from the store of record whose
    delete the other store missed (or, retired, never got), brought back."""
    from dualsaver.control.phase import Phase
    from dualsaver.control.sources import resolve_phase
    from dualsaver.errors import describe_error
    from dualsaver.saver.routing import route_for

    if args.force:
        return None
    try:
        phase, origin = resolve_phase(args.phase, settings=settings_for(args))
    except Exception as exc:  # an unknown phase, an unreachable control store: one line
        return f"a backfill needs the phase: {describe_error(exc)}"
    if args.reverse and route_for(phase).primary == "old":
        return (f"--reverse copies into old, the primary in {phase} (phase from {origin}): a thread or item"
                " deleted from old whose delete new missed would come back. A reverse backfill is for leaving"
                " decommission (or read-switch); pass --phase if the fleet is there, or --force to copy anyway")
    if not args.reverse and phase is Phase.DECOMMISSION:
        return (f"old is retired in {phase} (phase from {origin}): a backfill would copy into new, the only store"
                " written, what was deleted there since (a conversation deleted in decommission would come back)."
                " Leaving decommission starts with `dualsaver backfill --reverse`; pass --phase if the fleet is"
                " elsewhere, or --force to copy anyway")
    return None


def _run_checkpoints(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None]:
    from dualsaver.control.evidence import CHECKPOINT_RUNS
    from dualsaver.migrate import backfill
    from dualsaver.errors import PreflightRefused, SameStore, describe_error
    from dualsaver.stores import StoreURLError, open_saver, redact
    from dualsaver.redact import scrub

    try:
        name_stores(args)
        serdes = {"old": serde_from_name(args.old_serde), "new": serde_from_name(args.new_serde)}
        parse_classes(args.allow_lossy)
        if args.processes and args.shard:
            raise ValueError("--processes and --shard cannot be combined: --processes runs every shard of one job"
                             " itself (run one command per machine with --shard, or one with --processes)")
    except ValueError as exc:
        print(f"dualsaver backfill: {exc}", file=sys.stderr)
        return 2, None
    source, target = ("new", "old") if args.reverse else ("old", "new")
    source_url, target_url = getattr(args, source), getattr(args, target)
    throttle = throttle_from(args)
    settings = settings_for(args)
    progress = None if args.no_progress else TqdmProgress("backfill" + (" (reverse)" if args.reverse else ""), throttle)
    try:
        with (
            open_saver(source_url, must_exist=True, pool_size=args.workers, serde=serdes[source]) as source_saver,
            open_saver(target_url, pool_size=args.workers, serde=serdes[target]) as target_saver,
        ):
            savers = {source: source_saver, target: target_saver}
            pair = paired(savers["old"], savers["new"], "a backfill")  # other names of one server too
            if not args.force and (why := crossed_pair(settings, pair, CHECKPOINT_RUNS, ("--old", "--new"),
                                                       BACKFILL_REMEDY)) is not None:
                print(f"dualsaver backfill: {why}", file=sys.stderr)
                return 2, None
            by_url = {"processes": args.processes, "serdes": (getattr(args, f"{source}_serde"),
                                                              getattr(args, f"{target}_serde"))}
            result = backfill(  # with --processes, each process opens the stores from their URLs
                *((source_url, target_url) if args.processes else (source_saver, target_saver)),
                workers=args.workers,
                shard=args.shard,
                resume=not args.restart,
                dry_run=args.dry_run,
                thread_ids=args.threads,
                progress=progress,
                state_path=args.state,
                old_name=redact(source_url),
                new_name=redact(target_url),
                throttle=throttle,
                control=settings.control_url,
                control_name=settings.record_name,
                preflight=not args.no_preflight,
                allow_lossy=args.allow_lossy,
                **(by_url if args.processes else {}),
            )
    except (StoreURLError, SameStore) as exc:
        print(f"dualsaver backfill: {exc}", file=sys.stderr)
        return 2, None
    except PreflightRefused as exc:
        print(f"dualsaver backfill: {exc}", file=sys.stderr)
        return 1, {"refused": True, "preflight": exc.report.to_dict()}  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        print("\ndualsaver backfill: interrupted; progress is saved, run again to resume", file=sys.stderr)
        return 130, None
    except Exception as exc:  # one line, never a traceback, never a password
        message = scrub(scrub(describe_error(exc), source_url), target_url)
        print(f"dualsaver backfill: could not run: {message}", file=sys.stderr)
        return 2, None
    finally:
        if progress is not None:
            progress.close()
    print(result.summary(), file=sys.stderr)
    from dualsaver.control.evidence import record_backfill, scope

    # What `dualsaver phase set read-switch` and `dualsaver status` read back.
    record_backfill(result, reverse=args.reverse, scope=scope(args.shard, args.threads), pair=pair, settings=settings)
    return (1 if result.failed else 0), result.as_dict()
