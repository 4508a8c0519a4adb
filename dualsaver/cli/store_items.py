"""The long-term store's half of `backfill`, `check`, `repair` and `status`: --store-old /
--store-new (settings `stores.store_old` / `stores.store_new`, $DUALSAVER_STORE_OLD_URL /
$DUALSAVER_STORE_NEW_URL), the index from `[store.index]`. With only store URLs a command
works on the store alone; with both pairs, on both."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dualsaver.cli.options import BACKFILL_REMEDY, crossed_pair, paired, settings_for


def add_store_item_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-old", metavar="URL", help="the long-term store (BaseStore) being left: sqlite:///,"
                   " postgresql://, redis+langgraph://, memory://"
                   " (default: stores.store_old, $DUALSAVER_STORE_OLD_URL)")
    p.add_argument("--store-new", metavar="URL", help="the long-term store being moved to (default:"
                   " stores.store_new, $DUALSAVER_STORE_NEW_URL)")
    p.add_argument("--store-prefix", metavar="NS", help="only items under this namespace prefix (dotted: users.alice)")


def store_pair(args: argparse.Namespace) -> tuple[str, str] | None:
    """(old, new) URLs of the long-term stores, or None when neither is named; ValueError
    when only one is."""
    s = settings_for(args)
    old, new = args.store_old or s.store_old_url, args.store_new or s.store_new_url
    if not (old or new):
        return None
    if not (old and new):
        raise ValueError("both --store-old and --store-new are needed for the long-term store")
    return old, new


def has_checkpoint_pair(args: argparse.Namespace) -> bool:
    s = settings_for(args)
    return bool((args.old or s.old_url) and (args.new or s.new_url))


def error_text(exc: BaseException, urls: tuple[str, str]) -> str:
    """What went wrong with the long-term stores, on one line, their passwords masked."""
    from dualsaver.errors import describe_error
    from dualsaver.redact import password_of

    return describe_error(exc, secrets=map(password_of, urls))


def prefix_of(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(args.store_prefix.split(".")) if getattr(args, "store_prefix", None) else ()


def _stores(args: argparse.Namespace, urls: tuple[str, str]) -> Any:
    from contextlib import ExitStack

    from dualsaver.items import open_item_store

    index = settings_for(args).store_index
    stack = ExitStack()
    opened = [stack.enter_context(open_item_store(url, index=index)) for url in urls]
    return stack, opened


def backfill(args: argparse.Namespace, urls: tuple[str, str], throttle: Any) -> tuple[int, dict[str, Any]]:
    """The store's backfill; (exit code, result as a dict). Prints its summary."""
    from dualsaver.control.evidence import ITEM_RUNS, record_store_backfill, scope
    from dualsaver.items import backfill_items
    from dualsaver.redact import redact

    source, target = (urls[1], urls[0]) if args.reverse else urls
    settings = settings_for(args)
    stack, (src, dst) = _stores(args, (source, target))
    with stack:
        pair = paired(*((dst, src) if args.reverse else (src, dst)), "a backfill")
        if not getattr(args, "force", False) and (why := crossed_pair(
                settings, pair, ITEM_RUNS, ("--store-old", "--store-new"), BACKFILL_REMEDY)) is not None:
            raise ValueError(why)
        result = backfill_items(src, dst, prefix=prefix_of(args), shard=args.shard, resume=not args.restart,
                                dry_run=args.dry_run, throttle=throttle, state_path=args.state,
                                old_name=redact(source), new_name=redact(target), control=settings.control_url,
                                control_name=settings.record_name, allow_lossy=args.allow_lossy)
    print(result.summary(), file=sys.stderr)
    if not args.reverse and not prefix_of(args):
        record_store_backfill(result, scope=scope(args.shard), pair=pair, settings=settings)
    return (1 if result.bad else 0), result.as_dict()


def check(args: argparse.Namespace, urls: tuple[str, str], throttle: Any) -> tuple[Any, dict[str, str]]:
    """The store's check: its report (item divergences), and the stores' fingerprints."""
    from dualsaver.items import check_items

    stack, (old, new) = _stores(args, urls)
    with stack:
        pair = paired(old, new, "a check")
        report = check_items(old, new, prefix=prefix_of(args), shard=args.shard, throttle=throttle,
                             recheck=not args.no_recheck, show_values=getattr(args, "show_values", False))
        return report, pair


def record_check(args: argparse.Namespace, report: Any, pair: dict[str, str], *, writing_behind: str | None) -> None:
    from dualsaver.control.evidence import record_store_check, scope

    if not prefix_of(args):
        record_store_check(report, scope=scope(args.shard), pair=pair, settings=settings_for(args),
                           writing_behind=writing_behind)


def repair(args: argparse.Namespace, urls: tuple[str, str], source: str, report: Any, entries: list[Any]) -> int:
    """Repair the items a report or journal entries name, from `source` ("old"/"new"); then
    re-check them. Exit code 0 when clean."""
    from dualsaver.control.evidence import ITEM_RUNS
    from dualsaver.items import (
        check_items, entry_key, item_entries, keys_from_journal, missed_from_journal, repair_items,
    )

    target = "new" if source == "old" else "old"
    keys = report.affected_items() if report is not None else keys_from_journal(entries, target)
    kept = set(_kept_in_old(report)) if report is not None and source == "new" else set()
    keys = [k for k in keys if k not in kept]
    if not keys:
        print("store: nothing to repair")
        return 1 if kept else 0
    print(f"store: {len(keys)} item(s) to copy again from {source}")
    if args.dry_run:
        return 0
    stack, (old, new) = _stores(args, urls)
    with stack:
        pair = paired(old, new, "a repair")
        if (why := crossed_pair(settings_for(args), pair, ITEM_RUNS, ("--store-old", "--store-new"))) is not None:
            raise ValueError(why)
        stores = {"old": old, "new": new}
        missed = None if report is not None else missed_from_journal(entries, target)
        result = repair_items(stores[source], stores[target], keys, missed=missed)
        print(result.summary())
        rechecked = check_items(old, new, keys=keys)
        still = rechecked.divergences
        if report is None and hasattr(args, "_journal"):  # an entry stays pending while its item differs
            divergent = set(rechecked.affected_items())
            ids = [e.id for e in item_entries(entries, target) if e.id is not None and entry_key(e) not in divergent]
            print(f"journal: {args._journal.mark_repaired(ids)} store entr(ies) marked repaired")
    print(f"store: re-check of {len(keys)} item(s): {'clean' if not still else f'{len(still)} still divergent'}")
    return 0 if not still and not result.bad and not kept else 1


def _kept_in_old(report: Any) -> list[tuple[tuple[str, ...], str]]:
    """The items of a report only old holds, which a repair from new (read-switch on) leaves
    in old, and says so: read-switch answers an item new lacks from old, and new may have
    lost it, so deleting it from old could lose the memory everywhere."""
    from dualsaver.checker.findings import ITEM_MISSING_IN_NEW
    from dualsaver.items.record import ns_text

    kept = report.affected_items(kinds=(ITEM_MISSING_IN_NEW,))
    if kept:
        prefixes = sorted({ns_text(ns) for ns, _ in kept})
        print(f"store: {len(kept)} item(s) only old holds are left in old (from read-switch on they are not deleted:"
              " read-switch answers an item new lacks from old, and new may have lost it); copy them into new"
              f" (insert-if-absent) with `dualsaver backfill --store-prefix {prefixes[0]}`"
              + (f" (and {len(prefixes) - 1} more namespace(s))" if len(prefixes) > 1 else "")
              + ", or, if new deleted them, apply the delete with `dualsaver repair --journal`")
        for ns, key in kept[:10]:
            print(f"  needs attention: {ns_text(ns)} {key}")
    return kept
