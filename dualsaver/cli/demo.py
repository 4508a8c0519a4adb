"""`dualsaver demo`: a full migration on embedded stores."""

from __future__ import annotations

from dualsaver.cli.options import add_command

import argparse
from pathlib import Path

EPILOG = """\
examples:
  dualsaver demo                     SQLite -> embedded PostgreSQL
  dualsaver demo --new redis         SQLite -> embedded Redis (dualsaver's Redis saver)
  dualsaver demo --new langgraph-redis
                                     SQLite -> embedded Redis 8 with RedisJSON and
                                     RediSearch (the official LangGraph Redis saver)
  dualsaver demo --dir /tmp/ds-demo  keep the stores and reports somewhere else

Nothing to set up: the demo starts its own PostgreSQL (or Redis) from the binaries that
the `embedded` extra installs, and stops it at the end. The work dir is wiped at the start.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "demo",
        help="run a full migration on embedded stores, narrated",
        description="Walk a real LangGraph app's memory through every phase of a migration.",
        epilog=EPILOG,
    )
    parser.add_argument("--new", choices=("postgres", "redis", "langgraph-redis"), default="postgres",
                        help="the store to migrate to (default: postgres)")
    parser.add_argument("--dir", type=Path, default=Path("dualsaver-demo"),
                        help="work dir for the stores and reports (default: ./dualsaver-demo)")
    parser.add_argument("--conversations", type=int, default=12, help="conversations the agent holds (default: 12)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from dualsaver.errors import install_hint

    try:
        return _demo(args)
    except ModuleNotFoundError as exc:  # the demo needs langgraph, the stores' drivers, the servers
        print(f"dualsaver demo: {install_hint(exc.name)} (everything the demo needs: pip install"
              " 'dualsaver[demo]')", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    import os

    from dualsaver.demo import run_demo
    from dualsaver.observability.logs import configure_logging

    # The narration tells the story; library logs only when something goes wrong.
    configure_logging(level=os.environ.get("DUALSAVER_LOG_LEVEL", "warning"))

    if args.conversations < 4:
        raise SystemExit("dualsaver demo: --conversations must be at least 4")
    return run_demo(new_kind=args.new, workdir=args.dir.resolve(), conversations=args.conversations)
