"""The `dualsaver` command: a thin dispatcher; each subcommand lives in its own module.

A subcommand module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` (the exit code) as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order `dualsaver --help` lists them: the operator's workflow.
COMMAND_MODULES = ("demo", "preflight", "backfill", "check", "repair", "throttle", "phase", "status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualsaver",
        description=(
            "Move a LangGraph application's checkpoints from one checkpointer to another "
            "with no downtime: shadow-write, backfill, check, switch reads, decommission."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"dualsaver.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dualsaver.cli.{name}":
                raise
            continue  # not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from dualsaver.observability.otel_setup import command_span, configure_cli

    configure_cli()  # structlog (JSON, passwords redacted) and the OTel SDK from OTEL_*
    with command_span(args.command):
        return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
