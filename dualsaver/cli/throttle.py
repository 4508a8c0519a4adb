"""`dualsaver throttle`: change the limits of running backfills, checks and repairs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dualsaver.cli.options import add_command, positive_number

EPILOG = """\
examples:
  # slow every running job on this machine to 200 checkpoints a second
  dualsaver throttle --max-rate 200

  # back off while the stores' p95 latency is above 250 ms
  dualsaver throttle --max-load 250

  # what is set; then give the jobs back their own limits (their --max-rate / --max-load)
  dualsaver throttle --show
  dualsaver throttle --clear

Running jobs look at the throttle file at most once a second and follow only changes made
after they started; their progress line says when and why they wait. The file is
.dualsaver/throttle.json (or --throttle-file, or $DUALSAVER_THROTTLE_FILE): give the jobs
the same one.
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "throttle",
        help="change the limits of running backfills, checks and repairs",
        epilog=EPILOG,
    )
    p.add_argument("--max-rate", type=positive_number, metavar="N", help="at most N checkpoints a second")
    p.add_argument("--max-load", type=positive_number, metavar="MS", help="back off while the p95 store latency is above MS")
    p.add_argument("--clear", action="store_true", help="remove the limits set here")
    p.add_argument("--show", action="store_true", help="print the limits set here (JSON)")
    p.add_argument("--throttle-file", metavar="PATH", help="the throttle file (default .dualsaver/throttle.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dualsaver.control.throttle import Limits, ThrottleFile

    file = ThrottleFile(args.throttle_file)
    if args.clear:
        print(f"throttle: {'cleared' if file.clear() else 'nothing was set'} ({file.path})")
        return 0
    if args.max_rate is None and args.max_load is None:
        file.started = 0.0  # show whatever is there, however old
        shown = file.current() if file.path.exists() else None
        print(json.dumps({"file": str(file.path), "limits": shown.__dict__ if shown else None}))
        return 0
    limits = Limits(args.max_rate, args.max_load)
    file.write(limits)
    print(f"throttle: {limits.describe()} ({file.path}); running jobs follow within a second")
    return 0
