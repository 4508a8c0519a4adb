"""`dualsaver phase show` and `dualsaver phase set PHASE`: the fleet's shared phase, guarded."""

from __future__ import annotations

from dualsaver.cli.options import add_command, add_control_argument

import argparse
import json
import os
import sys
import time
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_CANNOT, EXIT_RACE, EXIT_WAIT = 0, 1, 2, 3, 4
HISTORY_SCANNED = 1000  # transitions the guards look through for the last move back or out of shadow-write

EPILOG = """\
examples:
  # where the fleet stands, the transitions so far, and which moves are allowed now
  dualsaver phase show --control redis://localhost:6379/0

  # step forward (replicas follow within their poll interval); wait until they all did
  dualsaver phase set backfill --reason "shadow-write clean for a week" --wait 60

  # switching reads needs a backfill, and a clean check newer than it and than leaving shadow-write
  dualsaver backfill --old ... --new ... && dualsaver check --old ... --new ...
  dualsaver phase set read-switch

  # roll back (allowed while old is still written), once old has what it missed
  dualsaver repair --journal --phase read-switch
  dualsaver phase set backfill --reason "latency regression on new"

  # override a guard: recorded as forced in the history, logged as a warning
  dualsaver phase set read-switch --force --reason "check verified by hand"

rules:
  forward moves go one step at a time: shadow-write -> backfill -> read-switch -> decommission
  backward moves are allowed while the old store is still written (not from decommission,
  unless a reverse backfill, `dualsaver backfill --reverse`, finished after decommission),
  and out of read-switch or decommission once no journal entry naming old waits for
  `dualsaver repair --journal --phase CURRENT` (what old missed would vanish from reads)
  read-switch needs a successful full backfill and a clean full check started after it
  (and after the last move back to old, if reads were on new before)
  read-switch and decommission need no journal entry naming new left unrepaired
  a step is refused while live replicas still report the previous phase (use --wait)

The control store is named by --control, else control.url in the settings file (--config or
$DUALSAVER_SETTINGS), else $DUALSAVER_CONTROL_URL. Passwords are never printed.

exit status: 0 done (or already there), 1 refused by a guard, 2 could not run (no control
store, control store unreachable, bad settings), 3 the phase changed meanwhile (look again),
4 --wait ran out before every live replica reported the new phase.
"""


def phase_arg(text: str) -> Any:
    from dualsaver.control.phase import InvalidPhaseError, Phase

    try:
        return Phase.parse(text)
    except InvalidPhaseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(p: argparse.ArgumentParser) -> None:
    add_control_argument(p, help="the fleet's control store, holding the phase record (postgresql://..., redis://...)")
    p.add_argument("--name", metavar="NAME",
        help="the migration's name in the control store (default: settings, else 'default')")
    p.add_argument("--config", metavar="PATH", help="settings file (default $DUALSAVER_SETTINGS)")


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "phase",
        help="show or change the fleet's shared phase (guarded transitions)",
        description="Show or change the phase every replica follows through the control store's phase record.",
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="phase_command", metavar="show|set")
    show = add_command(
        sub,
        "show",
        help="the recorded phase, its history, the replicas, the allowed moves",
        epilog=EPILOG,
    )
    _common(show)
    show.add_argument("--json", action="store_true", help="print JSON on stdout")
    show.add_argument("--history", type=int, default=10, metavar="N", help="transitions shown (default 10)")
    show.set_defaults(func=run_show)
    setp = add_command(
        sub,
        "set",
        help="move the fleet to PHASE, if the rules allow it",
        epilog=EPILOG,
    )
    setp.add_argument("phase", type=phase_arg, metavar="PHASE",
        help="shadow-write | backfill | read-switch | decommission")
    _common(setp)
    setp.add_argument("--force", action="store_true", help="override a refusing guard (recorded and logged loudly)")
    setp.add_argument("--reason", default="", metavar="TEXT", help="why: kept in the history")
    setp.add_argument("--by", metavar="WHO", help="who is changing it (default $DUALSAVER_OPERATOR, else user@host)")
    setp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
        help="then wait until every live replica reports the new phase")
    setp.set_defaults(func=run_set)
    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return EXIT_CANNOT

    p.set_defaults(func=usage)


def fail(code: int, message: str) -> int:
    print(f"dualsaver phase: {message}", file=sys.stderr)
    return code


def _open(args: argparse.Namespace) -> Any:
    """(control store, settings), or raises ValueError / RecordUnavailable with a printable message."""
    from dualsaver.control import settings as settings_module
    from dualsaver.control.record import open_control_store

    s = settings_module.current(args.config)
    url = args.control or s.control_url
    if not url:
        raise ValueError(
            "no control store configured: pass --control URL, or set control.url in the"
            f" settings file, or ${settings_module.ENV_CONTROL}"
        )
    return open_control_store(url, name=args.name or s.control_name), s


def _evidence(control: Any, state: Any, settings: Any, *, verify_pair: bool = False) -> Any:
    """What the guards need: the recorded outcomes, judged against the configured pair of
    stores (`verify_pair`, when the settings or the environment name it) and the journal's
    open entries."""
    from dualsaver.control import evidence

    history = control.history(HISTORY_SCANNED)
    return evidence.evidence(
        control, state.changed_at if state else None, pair=_configured_pair(settings) if verify_pair else None,
        unrepaired=evidence.count_unrepaired(control),
        reads_back_at=evidence.reads_moved_back(history), left_shadow_write_at=evidence.left_shadow_write(history),
        store_pair=bool(getattr(settings, "store_old_url", None) and getattr(settings, "store_new_url", None)),
    )


def _configured_pair(settings: Any) -> dict[str, str] | None:
    """The fingerprints of stores.old / stores.new ($DUALSAVER_OLD_URL / _NEW_URL); None when
    they are not named (the pair the last whole backfill ran on is the migration's then)."""
    if not (settings.old_url and settings.new_url):
        return None
    from dualsaver.cli.options import pair_of
    from dualsaver.stores import open_saver

    with open_saver(settings.old_url, must_exist=True) as old, open_saver(settings.new_url, must_exist=True) as new:
        return pair_of(old, new)


def _when(ts: float | None) -> str:
    from dualsaver.control.phase import utc_time

    return utc_time(ts) if ts else "never"


def lagging(control: Any, phase: Any) -> list[Any]:
    """Live replicas that do not report `phase` yet."""
    return [r for r in control.replicas() if r.alive() and r.phase != phase.value]


def allowed_moves(current: Any, evidence: Any) -> dict[str, str | None]:
    """phase -> None when allowed now, else the guard's reason."""
    from dualsaver.control.phase import Phase, TransitionError, guard_transition

    moves: dict[str, str | None] = {}
    for target in Phase:
        if target is current:
            continue
        try:
            guard_transition(current, target, evidence)
            moves[target.value] = None
        except TransitionError as exc:
            moves[target.value] = str(exc)
    return moves


def run_show(args: argparse.Namespace) -> int:
    from dualsaver.errors import RecordUnavailable
    from dualsaver.errors import SettingsError

    try:
        control, settings = _open(args)
    except (ValueError, SettingsError, RecordUnavailable) as exc:
        return fail(EXIT_CANNOT, str(exc))
    try:
        with control:
            doc, shown = _show_doc(control, settings, args.history)
    except RecordUnavailable as exc:
        return fail(EXIT_CANNOT, str(exc))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(_show_lines(doc, *shown)))
    return EXIT_OK


def _show_doc(control: Any, settings: Any, history_size: int) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """What `phase show` says, as JSON (its `record` key is the control store: the name
    scripts read), and the records it came from (state, history, replicas, now) for the text."""
    from dualsaver.control.phase import Phase
    from dualsaver.control.sources import ENV_VAR

    state = control.read()
    history = control.history(history_size)
    replicas = control.replicas()
    current = state.phase if state else Phase.SHADOW_WRITE
    moves = allowed_moves(current, _evidence(control, state, settings))
    now = time.time()
    doc = {
        "record": control.where,
        "name": control.name,
        "phase": current.value,
        "set": state is not None,
        "state": state.as_dict() if state else None,
        "history": [t.as_dict() for t in history],
        "replicas": [{**r.as_dict(), "alive": r.alive(now)} for r in replicas],
        "allowed": [p for p, why in moves.items() if why is None],
        "refused": {p: why for p, why in moves.items() if why is not None},
        "environment_override": os.environ.get(ENV_VAR) or None,
    }
    return doc, (state, history, replicas, now)


def _show_lines(doc: dict[str, Any], state: Any, history: list[Any], replicas: list[Any], now: float) -> list[str]:
    """`phase show` as text: the phase and who set it, the history, the replicas, the moves."""
    from dualsaver.control.sources import ENV_VAR

    lines = [f"phase: {doc['phase']}" + ("" if state else " (never set: the default)"),
             f"control store: {doc['record']} (migration {doc['name']!r})"]
    if state:
        forced = " FORCED" if state.forced else ""
        lines.append(f"set: {_when(state.changed_at)} by {state.changed_by}{forced} (version {state.version})")
        lines += [f"reason: {state.reason}"] if state.reason else []
    lines += ["history:"] if history else []
    lines += [_transition_line(t) for t in history]
    live = [r for r in replicas if r.alive(now)]
    silent = len(replicas) - len(live)
    lines.append(f"replicas: {len(live)} live" + (f", {silent} silent" if silent else ""))
    for r in replicas:
        state_text = "live" if r.alive(now) else "silent"
        lines.append(f"  {r.replica}  {r.phase}  seen {now - r.seen_at:.1f}s ago ({state_text})")
    lines.append("allowed now: " + (", ".join(doc["allowed"]) or "none"))
    lines += [f"  {target}: refused: {why}" for target, why in doc["refused"].items()]
    if doc["environment_override"]:
        lines.append(f"note: ${ENV_VAR}={doc['environment_override']} in this environment pins any process"
                     " that has it")
    return lines


def _transition_line(t: Any) -> str:
    forced = " [forced]" if t.forced else ""
    why = f": {t.reason}" if t.reason else ""
    moved = f"{t.from_phase or '(none)'} -> {t.to_phase}"
    return f"  {_when(t.changed_at)}  {moved}  by {t.changed_by}{forced}{why}"


def run_set(args: argparse.Namespace) -> int:
    from dualsaver.control.phase import Phase
    from dualsaver.control.record import who
    from dualsaver.errors import ConcurrentChange, RecordUnavailable, StoreURLError
    from dualsaver.errors import SettingsError

    target: Phase = args.phase
    by = args.by or who()
    try:
        control, settings = _open(args)
    except (ValueError, SettingsError, RecordUnavailable) as exc:
        return fail(EXIT_CANNOT, str(exc))
    with control:
        try:
            state = control.read()
            current = state.phase if state else Phase.SHADOW_WRITE
            if state is not None and target is current:
                print(f"phase: already {current.value} (version {state.version}); nothing to do")
                return _wait(control, target, args.wait)
            refusal = _refusal(control, state, current, target, settings)
            if refusal and not args.force:
                return fail(EXIT_REFUSED,
                    f"refused: {refusal}\n(--force overrides; a forced change is recorded in the history and logged)")
            if refusal:
                _say_forced(control, current, target, refusal, by, args.reason)
            new = control.set_phase(
                target, expected_version=state.version if state else 0, by=by, reason=args.reason,
                forced=bool(refusal),
            )
        except ConcurrentChange as exc:
            return fail(EXIT_RACE, str(exc))
        except (RecordUnavailable, StoreURLError) as exc:  # a store of the configured pair is away
            return fail(EXIT_CANNOT, str(exc))
        _log().info("phase_set", from_phase=current.value if state else None, to_phase=target.value,
                    version=new.version, by=by, reason=args.reason, forced=new.forced, record=control.where)
        was = current.value if state else f"{current.value} (default, never set)"
        print(f"phase: {was} -> {target.value} (version {new.version}, by {by})")
        return _wait(control, target, args.wait)


def _refusal(control: Any, state: Any, current: Any, target: Any, settings: Any) -> str | None:
    """Why the guard refuses the move now (None: it allows it). The move itself is judged
    first, from the control store alone: only a move the rules allow opens the configured
    stores, to check that the evidence is about them; then no live replica may lag behind."""
    from dualsaver.control.phase import Phase, TransitionError, guard_transition

    try:
        guard_transition(current, target, _evidence(control, state, settings))
        if target is Phase.READ_SWITCH:
            guard_transition(current, target, _evidence(control, state, settings, verify_pair=True))
    except TransitionError as exc:
        return str(exc)
    behind = lagging(control, current) if state is not None else []
    if not behind:
        return None
    names = ", ".join(f"{r.replica} ({r.phase})" for r in behind[:5])
    return (f"{len(behind)} live replica(s) have not yet followed the last change to"
            f" {current.value}: {names}; wait for them (`phase set {current.value} --wait 60`)")


def _say_forced(control: Any, current: Any, target: Any, refusal: str, by: str, reason: str) -> None:
    """A forced move is logged as a warning and said on stderr (the history records it too)."""
    _log().warning("phase_transition_forced", from_phase=current.value, to_phase=target.value,
                   overridden=refusal, by=by, reason=reason, record=control.where)
    print(f"WARNING: forcing {current.value} -> {target.value} against the guard: {refusal}", file=sys.stderr)


def _log() -> Any:
    import structlog

    return structlog.get_logger("dualsaver.cli.phase")


def _wait(control: Any, target: Any, seconds: float) -> int:
    """Wait until every live replica reports `target` (0 seconds: do not wait)."""
    from dualsaver.errors import RecordUnavailable

    if seconds <= 0:
        return EXIT_OK
    deadline = time.monotonic() + seconds
    while True:
        try:
            behind = lagging(control, target)
            live = [r for r in control.replicas() if r.alive()]
        except RecordUnavailable as exc:
            behind, live = None, []
            last_error = str(exc)
        if behind == []:
            print(f"fleet: {len(live)} live replica(s) report {target.value}")
            return EXIT_OK
        if time.monotonic() >= deadline:
            if behind is None:
                return fail(EXIT_WAIT, f"gave up waiting: {last_error}")
            names = ", ".join(f"{r.replica} ({r.phase})" for r in behind[:5])
            return fail(EXIT_WAIT,
                f"gave up waiting after {seconds:g}s: {len(behind)} replica(s) still elsewhere: {names}")
        time.sleep(0.2)
