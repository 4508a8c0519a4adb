"""What the subcommands share: how a subcommand's parser is made, and argument types."""

from __future__ import annotations

import argparse
import sys
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


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def add_throttle_arguments(p: argparse.ArgumentParser) -> None:
    """--max-rate / --max-load / --throttle-file, for the jobs that copy or read whole stores."""
    p.add_argument("--max-rate", type=positive_number, metavar="N", help="at most N checkpoints a second")
    p.add_argument(
        "--max-load", type=positive_number, metavar="MS",
        help="back off while the p95 latency of the stores' calls, over 5 s, is above MS milliseconds",
    )
    p.add_argument(
        "--throttle-file", metavar="PATH",
        help="limits changed while the job runs, by `dualsaver throttle` (default .dualsaver/throttle.json)",
    )


def throttle_from(args: argparse.Namespace) -> Any:
    """The job's throttle: its own limits, changed by `dualsaver throttle` through the
    control store when the job has one, else through the throttle file."""
    from dualsaver.control.throttle import throttle_for

    return throttle_for(args.max_rate, args.max_load, args.throttle_file, control=control_store(args))


def control_store(args: argparse.Namespace) -> Any:
    """The control store named by --control, the settings or the environment; None without one."""
    from dualsaver.control.record import open_control_store

    s = settings_for(args)
    return open_control_store(s.control_url, name=s.control_name) if s.control_url else None


CONTROL_HELP = ("the fleet's control store, postgresql://... or redis://... (default: the settings file,"
                " $DUALSAVER_CONTROL_URL); without one, progress and evidence stay in local files")


control_record = control_store  # its older name


def add_control_argument(p: argparse.ArgumentParser, help: str = CONTROL_HELP) -> None:
    """--control URL: the fleet's control store (phase record, journal, progress, evidence);
    --record URL, its older name, still works (not shown in the help, a note on stderr)."""
    p.add_argument("--control", metavar="URL", help=help)
    p.add_argument("--record", dest="control", metavar="URL", action=DeprecatedAlias, new_name="--control",
                   help=argparse.SUPPRESS)


class DeprecatedAlias(argparse.Action):
    """An option's older name: stores like the new one, and says once on stderr to use that."""

    def __init__(self, option_strings: list[str], dest: str, *, new_name: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_name = new_name

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new_name}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """--old / --new / --config and the serializer options: the pair a job runs on."""
    from dualsaver.stores.serde import add_serde_arguments

    p.add_argument("--old", metavar="URL", help="URL of the store being left (default: [stores] old in the settings"
                   " file, else $DUALSAVER_OLD_URL)")
    p.add_argument("--new", metavar="URL", help="URL of the store being moved to (default: [stores] new in the"
                   " settings file, else $DUALSAVER_NEW_URL)")
    p.add_argument("--config", metavar="PATH", help="settings file (default $DUALSAVER_SETTINGS)")
    add_serde_arguments(p)


def name_stores(args: argparse.Namespace) -> None:
    """Fill --old / --new left out from the settings in force; ValueError, carrying the line to
    print, when either is still unknown. URLs from the environment or a file keep passwords
    off the command line (and out of `ps`)."""
    if not (args.old and args.new):
        s = settings_for(args)
        args.old, args.new = args.old or s.old_url, args.new or s.new_url
    if not (args.old and args.new):
        raise ValueError("both --old and --new are needed (or $DUALSAVER_OLD_URL / $DUALSAVER_NEW_URL,"
                         " or [stores] in the settings file)")


def settings_for(args: argparse.Namespace) -> Any:
    """The settings in force (--config, else $DUALSAVER_SETTINGS), with --control in place of
    the control store they name. Read once per command (the stores, the throttle and the
    evidence all ask)."""
    from dataclasses import replace

    from dualsaver.control import settings

    if (known := getattr(args, "_settings", None)) is not None:
        return known
    loaded = settings.current(getattr(args, "config", None))
    control = getattr(args, "control", None)
    args._settings = replace(loaded, control_url=control) if control else loaded
    return args._settings


def pair_of(old_saver: Any, new_saver: Any) -> dict[str, str]:
    """The fingerprints of the pair of stores a run used (what the read-switch guard
    compares with the configured pair)."""
    from dualsaver.stores import store_fingerprint

    return {"old": store_fingerprint(old_saver), "new": store_fingerprint(new_saver)}


def paired(old: Any, new: Any, what: str) -> dict[str, str]:
    """The pair's fingerprints (`pair_of`); `SameStore` when they are one store. Stricter than
    `stores.refuse_same_store`, which the jobs apply without I/O: a fingerprint asks the
    store, so another hostname of the same server counts too. Two schemas of one PostgreSQL
    database are two stores."""
    from dualsaver.errors import SameStore
    from dualsaver.stores.identity import postgres_schema

    pair = pair_of(old, new)
    if pair["old"] == pair["new"] and postgres_schema(old) == postgres_schema(new):
        raise SameStore(f"old and new are the same store (by fingerprint, {pair['old']}): {what} needs two stores")
    return pair


REPAIR_REMEDY = "--source chooses which store a repair copies from"
BACKFILL_REMEDY = "--reverse copies new into old; --force if the migration now runs the other way"


def crossed_pair(
    settings: Any, pair: dict[str, str], kinds: tuple[tuple[str, ...], ...], flags: tuple[str, str],
    remedy: str = REPAIR_REMEDY,
) -> str | None:
    """Why the stores of `pair` (passed as `flags`) are the other way round from the pair of stores
    the migration's record names (`control.evidence.recorded_pair`: its newest backfill, else
    its newest check), by fingerprint however the URLs are written; None when they are not,
    or nothing recorded says. A repair given them crossed would make the store being left
    match the new one: the journal names roles, not stores, so what the new store missed
    would be copied into the old one from the new; a backfill given them crossed would copy
    the new store into the old one. `remedy` says what to pass instead."""
    from dualsaver.control.evidence import recorded_pair
    from dualsaver.control.phase import utc_time

    recorded = recorded_pair(kinds, settings)
    if recorded is None:
        return None
    kind, outcome = recorded
    if pair["old"] == pair["new"] or outcome["pair"] != {"old": pair["new"], "new": pair["old"]}:
        return None
    redo = "check" if kind.endswith("check") else "backfill"
    other_way = f", or, if the migration now runs the other way, run its {redo} first"
    other_way = other_way if remedy == REPAIR_REMEDY else ""  # a backfill is that run: --force is its way
    return (f"{flags[0]} and {flags[1]} are the other way round: the last recorded {kind.replace('_', ' ')}"
            f" ({utc_time(float(outcome.get('finished_at') or 0))}) ran with this {flags[1]} as its old store"
            f" and this {flags[0]} as its new store; pass them as it did ({remedy}){other_way}")
