"""`dualsaver throttle`: change the limits of running backfills, checks and repairs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from dualsaver.cli.options import add_command, add_control_argument, control_record, positive_number

EPILOG = """\
examples:
  # slow every running job to 200 checkpoints a second
  dualsaver throttle --max-rate 200

  # back off while the stores' p95 latency is above 250 ms
  dualsaver throttle --max-load 250

  # what is set; then give the jobs back their own limits (their --max-rate / --max-load)
  dualsaver throttle --show
  dualsaver throttle --clear

With a control store (--control, [control] url in the settings, $DUALSAVER_CONTROL_URL) the
limits are kept there and every job of the fleet that has it follows them, jobs started
later included, until --clear. Without one they go to a file on this machine,
.dualsaver/throttle.json (or --throttle-file, or $DUALSAVER_THROTTLE_FILE), which jobs follow
only for changes made after they started. Jobs look at most once a second; their progress
line says when and why they wait.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "throttle",
        help="change the limits of running backfills, checks and repairs",
        epilog=EPILOG,
    )
    p.add_argument("--max-rate", type=positive_number, metavar="N", help="at most N checkpoints a second")
    p.add_argument("--max-load", type=positive_number, metavar="MS",
                   help="back off while the p95 store latency is above MS")
    p.add_argument("--clear", action="store_true", help="remove the limits set here")
    p.add_argument("--show", action="store_true", help="print the limits set here (JSON)")
    p.add_argument("--throttle-file", metavar="PATH", help="the throttle file (default .dualsaver/throttle.json)")
    p.add_argument("--config", metavar="PATH", help="settings file (default $DUALSAVER_SETTINGS)")
    add_control_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dualsaver.control.throttle import FleetThrottle, Limits, ThrottleFile
    from dualsaver.errors import describe_error

    record = control_record(args)
    source = FleetThrottle(record) if record is not None else ThrottleFile(args.throttle_file)
    try:
        if args.clear:
            print(f"throttle: {'cleared' if source.clear() else 'nothing was set'} ({source.where})")
            return 0
        if args.max_rate is None and args.max_load is None:
            shown = source.stored()
            print(json.dumps({"where": source.where, "limits": asdict(shown) if shown else None}))
            return 0
        limits = Limits(args.max_rate, args.max_load)
        source.write(limits)
    except Exception as exc:  # one line, never a traceback, never a password
        print(f"dualsaver throttle: {describe_error(exc)}", file=sys.stderr)
        return 2
    finally:
        if record is not None:
            record.close()
    print(f"throttle: {limits.describe()} ({source.where}); running jobs follow within a second")
    return 0
