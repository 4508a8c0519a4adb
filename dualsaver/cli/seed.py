"""`dualsaver seed`: some conversations in a store, made by the demo's support agent, to try a
migration on (the history an application made before its migration started)."""

from __future__ import annotations

from dualsaver.cli.options import add_command

import argparse
import sys
from typing import Any

EPILOG = """\
examples:
  dualsaver seed --old sqlite:///checkpoints.sqlite            12 conversations, 3 turns each
  dualsaver seed --conversations 100 --turns 5                 into $DUALSAVER_OLD_URL

The conversations are held by the demo's LangGraph support agent (no model: pure graph
steps), with subgraphs, parallel branches and pending writes, as a real application's are.
Seeding again adds turns to the same conversations (customer-000, customer-001, ...).

exit status: 0 done, 2 the store cannot be opened (or an extra is missing).
"""


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "seed", help="write some conversations into a store, to try a migration on",
                    epilog=EPILOG)
    p.add_argument("--old", metavar="URL", help="the store to fill (default $DUALSAVER_OLD_URL)")
    p.add_argument("--conversations", type=int, default=12, metavar="N", help="conversations (default 12)")
    p.add_argument("--turns", type=int, default=3, metavar="N", help="turns in each (default 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from dualsaver.control.settings import ENV_OLD_URL
    from dualsaver.errors import StoreURLError, install_hint

    url = args.old or os.environ.get(ENV_OLD_URL)
    if not url:
        print(f"dualsaver seed: name the store: --old URL, or ${ENV_OLD_URL}", file=sys.stderr)
        return 2
    try:
        from dualsaver.demo.app import QUESTIONS, build_support_agent, say
        from dualsaver.stores import open_saver

        with open_saver(url) as saver:
            app = build_support_agent(saver)
            for n in range(args.conversations):
                for turn in range(args.turns):
                    say(app, f"customer-{n:03d}", QUESTIONS[turn % len(QUESTIONS)])
            checkpoints = sum(1 for _ in saver.list(None))
    except ModuleNotFoundError as exc:  # the agent needs langgraph: the demo extra
        print(f"dualsaver seed: {install_hint(exc.name)}", file=sys.stderr)
        return 2
    except StoreURLError as exc:
        print(f"dualsaver seed: {exc}", file=sys.stderr)
        return 2
    from dualsaver.redact import redact

    print(f"seeded {args.conversations} conversation(s) of {args.turns} turn(s) in {redact(url)};"
          f" it holds {checkpoints} checkpoint(s)")
    return 0
