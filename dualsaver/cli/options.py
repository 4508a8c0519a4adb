"""What the subcommands share: how a subcommand's parser is made, and argument types."""

from __future__ import annotations

import argparse
from typing import Any


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 0/4, not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text}: need 0 <= I < N")
    return index, count


def add_command(
    subparsers: Any, name: str, *, help: str, epilog: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser; its epilog (examples, exit codes) is printed as written."""
    return subparsers.add_parser(
        name, help=help, description=description or help, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
