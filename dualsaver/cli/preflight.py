"""`dualsaver preflight`: what the new store cannot hold faithfully, named before the move.

Exit codes: 0 clean, 1 findings, 2 could not run (bad URL, store unreachable).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dualsaver.cli.options import (
    add_command, add_control_argument, add_store_arguments, add_throttle_arguments, name_stores, parse_shard,
    throttle_from,
)

EXIT_CLEAN, EXIT_FINDINGS, EXIT_CANNOT_RUN = 0, 1, 2

EPILOG = """\
examples:
  # before a backfill into the official Redis saver: which threads would it merge or lose?
  dualsaver preflight --old sqlite:///app.sqlite --new redis+langgraph://cache:6379 \\
      --report preflight.json --html preflight.html

  # four machines, one shard each (id collisions are still judged over every id)
  dualsaver preflight --old ... --new ... --shard 0/4

  # the rule table: what each store can hold
  dualsaver preflight --rules

The new store is not read: only its kind matters. `dualsaver backfill` runs the same scan first
and refuses what it finds unless --allow-lossy names the rule classes to accept.

exit status: 0 clean, 1 findings, 2 could not run.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers, "preflight",
        help="scan the old store for what the new one cannot hold faithfully",
        description=("Scan every thread of the old store (ids and values) against the rules of the new"
                     " store's kind: ids its search folds together or cannot find, keys that collide,"
                     " NUL, lone surrogates, NaN/Infinity, integer range, nesting and size limits."),
        epilog=EPILOG,
    )
    add_store_arguments(p)
    p.add_argument("--report", metavar="PATH", help="write the JSON report here")
    p.add_argument("--html", metavar="PATH", help="write the HTML report here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--shard", type=parse_shard, metavar="I/N", help="scan only shard I of N")
    p.add_argument("--thread", action="append", dest="threads", metavar="ID", help="scan only this thread")
    p.add_argument("--rules", action="store_true", help="print the rule table (Markdown) and exit")
    add_throttle_arguments(p)
    add_control_argument(p)
    p.set_defaults(func=run)


def fail(message: str) -> int:
    print(f"dualsaver preflight: cannot run: {message}", file=sys.stderr)
    return EXIT_CANNOT_RUN


def run(args: argparse.Namespace) -> int:
    from dualsaver.errors import describe_error
    from dualsaver.preflight import preflight, target_kind
    from dualsaver.preflight.rules import markdown_table
    from dualsaver.redact import scrub
    from dualsaver.report.preflight import write_preflight_reports
    from dualsaver.stores import StoreURLError, open_saver, redact
    from dualsaver.stores.serde import serde_from_name
    from dualsaver.stores.urls import parse_store_url

    if args.rules:
        sys.stdout.write(markdown_table())
        return EXIT_CLEAN
    try:
        name_stores(args)
        kind = parse_store_url(args.new).kind
        serde = serde_from_name(args.old_serde)
    except ValueError as exc:
        return fail(str(exc))
    try:
        with open_saver(args.old, must_exist=True, serde=serde) as old_saver:
            if kind == "python":  # a factory: its saver says what it is
                with open_saver(args.new) as new_saver:
                    kind = target_kind(new_saver)
            report = preflight(old_saver, kind, shard=args.shard, thread_ids=args.threads,
                               throttle=throttle_from(args), old_name=redact(args.old), new_name=redact(args.new))
    except StoreURLError as exc:
        return fail(str(exc))
    except Exception as exc:  # one line, never a traceback, never a password
        return fail(scrub(scrub(describe_error(exc), args.old), args.new))
    try:
        write_preflight_reports(report, json_path=args.report, markdown_path=args.markdown, html_path=args.html)
    except OSError as exc:
        return fail(f"cannot write the report: {exc.strerror or exc}: {exc.filename or ''}")
    print(report.summary(), file=sys.stderr)
    if args.json:
        print(report.to_json())
    return EXIT_CLEAN if report.clean else EXIT_FINDINGS
