"""The `dualsaver` command: a thin dispatcher; each subcommand lives in its own module.

A subcommand module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` (the exit code) as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order `dualsaver --help` lists them: the operator's workflow.
COMMAND_MODULES = ("dev", "seed", "demo", "preflight", "backfill", "check", "repair", "throttle", "phase", "status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualsaver",
        description=(
            "Move a LangGraph application's memory (its checkpoints and its long-term store) "
            "from one backend to another with no downtime: shadow-write, backfill, check, "
            "switch reads, decommission."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dualsaver")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from dualsaver import __version__

        return __version__


def _phase_in_environment() -> str | None:
    """Why $DUALSAVER_PHASE cannot be used (one line), or None: every command reads it, and a
    typo there must stop each of them the same way rather than deep inside one."""
    import os

    from dualsaver.control.phase import InvalidPhaseError, Phase
    from dualsaver.control.sources import ENV_VAR

    value = os.environ.get(ENV_VAR)
    try:
        if value:
            Phase.parse(value)
    except InvalidPhaseError as exc:
        return f"${ENV_VAR}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command not in ("dev", "demo") and (problem := _phase_in_environment()):
        print(f"dualsaver {args.command}: {problem}", file=sys.stderr)
        return 2
    # `python:module:factory` URLs name modules as `python -m` would find them: the current
    # directory counts (last, so it never shadows an installed package).
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    from dualsaver.observability.otel_setup import command_span, configure_cli

    configure_cli()  # structlog (JSON, passwords redacted) and the OTel SDK from OTEL_*
    with command_span(args.command):
        return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
