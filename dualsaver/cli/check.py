"""`dualsaver check`: diff the two stores and write the divergence report.

Exit codes: 0 clean, 1 divergent, 2 could not check (bad URL, store unreachable).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from dualsaver.cli.store_items import add_store_item_arguments
from dualsaver.cli.options import (
    add_command, add_control_argument, add_store_arguments, add_throttle_arguments, name_stores, paired,
    parse_shard, positive, settings_for, throttle_from,
)
from dualsaver.stores.serde import serde_from_name

if TYPE_CHECKING:
    from dualsaver.checker import DivergenceReport
    from dualsaver.saver.routing import Role

EXIT_CLEAN, EXIT_DIVERGENT, EXIT_CANNOT_CHECK = 0, 1, 2

EPILOG = """\
examples:
  # after the backfill: is it safe to switch reads?
  dualsaver check --old sqlite:///app.sqlite --new postgresql://app@db/app \\
      --report check.json --html check.html

  # four machines, one shard each, eight workers apiece
  dualsaver check --old ... --new ... --shard 0/4 --workers 8 --report shard0.json

  # one machine, every core: the check in 4 processes, one report
  dualsaver check --old ... --new ... --processes 4 --report check.json

  # just these conversations, values shown (the report then holds conversation content)
  dualsaver check --old ... --new ... --thread t-42 --thread t-43 --show-values --markdown out.md

The URLs may come from $DUALSAVER_OLD_URL and $DUALSAVER_NEW_URL instead, which keeps
passwords off the command line. Reports and messages never show a password.

exit status: 0 clean, 1 divergences found, 2 could not check.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "check",
        help="diff the old and new stores; write a divergence report",
        description=(
            "Stream both stores thread by thread, diff every checkpoint, its metadata and its"
            " pending writes (decoded by each store's own serializer), re-check suspects so"
            " writes landing during the check are not reported, and write the report. Where both"
            " stores use one serializer configuration (an encrypted store counts by what it"
            " encrypted, decrypted with its own key), the stored bytes are compared first and"
            " only the threads whose bytes differ are decoded; the verdict is the same."
        ),
        epilog=EPILOG,
    )
    add_store_arguments(p)
    p.add_argument("--report", metavar="PATH", help="write the JSON report here")
    p.add_argument("--html", metavar="PATH", help="write the HTML report (self-contained) here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    p.add_argument(
        "--show-values",
        action="store_true",
        help="show the differing values in the reports (default: digests only)",
    )
    p.add_argument("--workers", type=int, default=1, metavar="N", help="threads diffed at once (in each process)")
    p.add_argument("--shard", type=parse_shard, metavar="I/N", help="check only shard I of N")
    p.add_argument("--processes", type=positive, metavar="N",
                   help="check in N processes (one per core; one thread's decoding is bound to one core):"
                   " each checks its part of the threads (of the --shard, with one), one progress, one report;"
                   " --workers is per process, --max-rate the whole check's")
    p.add_argument(
        "--thread", action="append", dest="threads", metavar="ID", help="check only this thread"
    )
    p.add_argument(
        "--phase",
        help="the migration phase (default: $DUALSAVER_PHASE, else the settings file, else the"
        " control store's record, else shadow-write); decides which store is written first, and"
        " so read last. A check that starts while the record stands at shadow-write, or while a"
        " live replica still reports it, does not count for `phase set read-switch`",
    )
    p.add_argument(
        "--no-recheck",
        action="store_true",
        help="report first-pass divergences without re-reading them (not under live traffic)",
    )
    p.add_argument(
        "--tiered",
        action="store_true",
        help="--old is a TieredSaver's durable store and --new its hot one: what the hot store does not"
        " hold is not a divergence (nothing is recorded for the read-switch guard)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    add_throttle_arguments(p)
    add_control_argument(p)
    add_store_item_arguments(p)
    p.set_defaults(func=run)



def phase_of(args: argparse.Namespace) -> tuple[Any, str]:
    """The phase in force for this command and where it came from (`--phase`, else the
    environment, the settings file, the control store's record), resolved once per command.
    ValueError when the control store that holds it is unreachable."""
    from dualsaver.control.sources import resolve_phase
    from dualsaver.errors import RecordUnavailable

    if (known := getattr(args, "_phase", None)) is not None:
        return known
    try:
        args._phase = resolve_phase(args.phase, settings=settings_for(args))
    except RecordUnavailable as exc:
        raise ValueError(f"the phase decides which store is the primary: {exc}") from None
    return args._phase


def primary_of(args: argparse.Namespace) -> Role:
    """The store written first in the phase: old until reads switch, then new."""
    from dualsaver.saver.routing import route_for

    return route_for(phase_of(args)[0]).primary


def primary_for_run(args: argparse.Namespace) -> Role:
    """The phase's primary, once both stores are named. ValueError, carrying the line to
    print, when the command cannot run (InvalidPhaseError is one)."""
    name_stores(args)
    return primary_of(args)


def writing_behind(args: argparse.Namespace) -> str | None:
    """Why replicas may still write new's copies behind as this check starts, where a crash
    loses what they queued with no journal entry (so the read-switch guard does not count the
    check): the fleet's record stands at shadow-write, or live replicas still report it. None
    when neither, or when no record gives the phase."""
    from dualsaver.control.phase import Phase
    from dualsaver.control.record import open_control_store
    from dualsaver.errors import RecordUnavailable

    phase, origin = phase_of(args)
    settings = settings_for(args)
    if not origin.startswith("phase record") or settings.control_url is None:
        return None
    if phase is Phase.SHADOW_WRITE:
        return f"the fleet was in shadow-write ({origin})"
    try:
        with open_control_store(settings.control_url, name=settings.record_name) as control:
            late = [r.replica for r in control.replicas() if r.alive() and r.phase == Phase.SHADOW_WRITE.value]
    except RecordUnavailable as exc:
        raise ValueError(f"the check needs the fleet's replicas: {exc}") from None
    if not late:
        return None
    return f"{len(late)} live replica(s) still reported shadow-write ({', '.join(late[:3])})"


def verdict(clean: bool, behind: str | None) -> str:
    """The answer to "may reads switch?", as the check's last line gives it."""
    if not clean:
        return "no"
    if behind is None:
        return "yes"
    return (f"not yet: the stores agree, but when this check started {behind}: in shadow-write a"
            " replica's crash loses the copies it queued for new with no journal entry; run"
            " `dualsaver phase set backfill --wait 120`, then check again")


class StderrProgress:
    """One line on stderr at most every `interval` seconds, and at each phase change."""

    def __init__(self, interval: float = 1.0, throttle: Any = None) -> None:
        self.interval = interval
        self.throttle = throttle  # its reason, when the check waits, ends the line
        self.last = 0.0
        self.phase = ""

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if p.phase == self.phase and now - self.last < self.interval:
            return
        self.last, self.phase = now, p.phase
        if p.phase == "scan":
            line = (
                f"check: {p.threads} threads, {p.checkpoints} checkpoints compared,"
                f" {p.suspects} suspect thread(s), {p.elapsed:.1f}s"
            )
        else:
            line = (
                f"check: re-check round {p.round}: {p.threads} thread(s) re-read,"
                f" {p.suspects} thread(s) still divergent"
            )
        if reason := getattr(self.throttle, "reason", None):
            line += f" (throttled: {reason})"
        print(line, file=sys.stderr, flush=True)


def fail(message: str) -> int:
    print(f"dualsaver check: cannot check: {message}", file=sys.stderr)
    return EXIT_CANNOT_CHECK


def run(args: argparse.Namespace) -> int:
    """The checkpoints' check, the long-term store's, or both, in one report."""
    from dualsaver.cli import store_items

    try:
        items = store_items.store_pair(args)
    except ValueError as exc:
        return fail(str(exc))
    if items is None:
        return _run_checkpoints(args)
    try:
        behind = writing_behind(args)  # before the checks start
    except ValueError as exc:
        return fail(str(exc))
    report = None
    if store_items.has_checkpoint_pair(args):
        report_out: list[DivergenceReport] = []
        code = _run_checkpoints(args, report_out, behind)
        if code == EXIT_CANNOT_CHECK:
            return code
        report = report_out[0]
    try:
        store_report, item_pair = store_items.check(args, items, throttle_from(args))
    except Exception as exc:
        return fail(f"store: {store_items.error_text(exc, items)}")
    store_items.record_check(args, store_report, item_pair, writing_behind=behind)
    if report is not None:
        report.divergences += store_report.divergences
        report.clean = report.clean and store_report.clean
        report.summary["items"] = store_report.summary["items"]
        report.summary["item_stores"] = store_report.summary["stores"]  # "stores" names the checkpoints'
        report.summary["counts"] = report.counts()
    else:
        report = store_report
    what = "both halves" if store_items.has_checkpoint_pair(args) else "the store"
    return _write_and_tell(args, report, what, behind)


def _write_and_tell(args: argparse.Namespace, report: Any, what: str, behind: str | None) -> int:
    from dualsaver.report import write_reports

    try:
        write_reports(report, json_path=args.report, markdown_path=args.markdown, html_path=args.html)
    except OSError as exc:
        return fail(f"cannot write the report: {exc.strerror or exc}: {exc.filename or ''}")
    counts = ", ".join(f"{k} {v}" for k, v in report.counts().items() if v)
    items = len(report.affected_items())
    tail = "" if report.clean else f": {len(report.divergences)} divergence(s), {items} store item(s) ({counts})"
    print(f"Safe to switch reads ({what}): {verdict(report.clean, behind)}{tail}")
    for path in (args.report, args.markdown, args.html):
        if path:
            print(f"  report: {path}")
    return EXIT_CLEAN if report.clean else EXIT_DIVERGENT


def _run_checkpoints(
    args: argparse.Namespace, report_out: list[DivergenceReport] | None = None, behind: str | None = None
) -> int:
    """The checkpoints' check; into `report_out` when the store's findings join it (`behind`
    then comes from the caller, `writing_behind`, asked once for both)."""
    from dualsaver.checker import CheckError, check
    from dualsaver.errors import SameStore
    from dualsaver.report import write_reports
    from dualsaver.stores import StoreURLError, open_saver, redact
    from dualsaver.redact import scrub

    try:
        primary = primary_for_run(args)
        if report_out is None:
            behind = writing_behind(args)
    except ValueError as exc:
        return fail(str(exc))
    pool = max(1, args.workers)
    throttle = throttle_from(args)
    try:
        old_serde, new_serde = serde_from_name(args.old_serde), serde_from_name(args.new_serde)
    except ValueError as exc:
        return fail(str(exc))
    if args.processes:
        from dualsaver.processes import warm_up

        warm_up()  # the processes' fork server starts while the stores open here
    try:
        with open_saver(
            args.old, must_exist=True, pool_size=pool, serde=old_serde
        ) as old_saver, open_saver(
            args.new, must_exist=True, pool_size=pool, serde=new_serde
        ) as new_saver:
            pair = paired(old_saver, new_saver, "a check")
            report = check(  # with --processes, each process opens the stores from their URLs
                *((args.old, args.new) if args.processes else (old_saver, new_saver)),
                workers=args.workers,
                shard=args.shard,
                thread_ids=args.threads,
                recheck=not args.no_recheck,
                progress=None if args.quiet else StderrProgress(throttle=throttle),
                show_values=args.show_values,
                primary=primary,
                old_name=redact(args.old),
                new_name=redact(args.new),
                throttle=throttle,
                processes=args.processes,
                serdes=(args.old_serde, args.new_serde),
            )
    except (StoreURLError, SameStore) as exc:
        return fail(str(exc))
    except CheckError as exc:
        cause = exc.__cause__ or exc
        detail = f"{exc}: {' '.join(str(cause).split())}"
        return fail(scrub(scrub(detail, args.old), args.new))
    if not args.quiet:
        print(totals_line(report.summary), file=sys.stderr, flush=True)
    if args.tiered:
        report = report.between_tiers()
    if report_out is not None:  # the store's findings join this report before it is written
        from dualsaver.control.evidence import record_check, scope

        record_check(report, scope=scope(args.shard, args.threads), pair=pair, settings=settings_for(args),
                     writing_behind=behind)
        report_out.append(report)
        return EXIT_CLEAN if report.clean else EXIT_DIVERGENT
    try:
        write_reports(
            report, json_path=args.report, markdown_path=args.markdown, html_path=args.html
        )
    except OSError as exc:
        return fail(f"cannot write the report: {exc.strerror or exc}: {exc.filename or ''}")
    from dualsaver.control.evidence import record_check, scope

    if not args.tiered:  # the evidence `dualsaver phase set read-switch` asks for
        record_check(report, scope=scope(args.shard, args.threads), pair=pair, settings=settings_for(args),
                     writing_behind=behind)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts().items() if v)
    threads = len(report.affected_threads())
    tail = "" if report.clean else f": {len(report.divergences)} divergence(s) in {threads} thread(s) ({counts})"
    if args.tiered:
        print(f"Tiers agree: {'yes' if report.clean else 'no'}{tail}"
              f" ({report.summary['not_hot']} checkpoint(s) or thread(s) only in the durable store)")
    else:
        print(f"Safe to switch reads: {verdict(report.clean, behind)}{tail}")
    for path in (args.report, args.markdown, args.html):
        if path:
            print(f"  report: {path}")
    if not report.clean and not args.tiered:
        print(f"  next: {next_step(args.report)}")
    return EXIT_CLEAN if report.clean else EXIT_DIVERGENT


def totals_line(summary: dict[str, Any]) -> str:
    """The check's last progress line: the whole run's totals (the throttled lines before it
    may have stopped early), and how exact the comparison was, as the backfill says of its copy."""
    exact = summary.get("exact") or {}
    inexact = [side for side in ("old", "new") if exact.get(side) is False]
    precision = "exact" if not inexact else (
        f"APPROXIMATE ({' and '.join(inexact)} read through the public API: write task paths and"
        " indexes not compared)"
    )
    return (
        f"check: {summary.get('threads_compared', 0)} thread(s), {summary.get('checkpoints_compared', 0)}"
        f" checkpoint(s) compared, {summary.get('affected_threads', 0)} divergent thread(s),"
        f" {summary.get('duration_seconds', 0):.1f}s; comparison is {precision}"
    )


def next_step(report_path: str | None) -> str:
    """What to do about divergences: repair from this report (written, or to write)."""
    if report_path:
        return f"dualsaver repair --report {report_path}, then dualsaver check again"
    return ("run the check again with --report check.json, then dualsaver repair --report check.json,"
            " then check again")
