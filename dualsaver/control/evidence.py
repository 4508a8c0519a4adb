"""Where the last backfill and the last check record their outcome and time.

The read-switch guard (`dualsaver phase set read-switch`) and `dualsaver status` read them.
They go to the control store when one is configured (so every operator and machine
sees the same facts), else to a local JSON file (`migration.status_file`,
`$DUALSAVER_STATUS`, default `.dualsaver/status.json`).

    record_backfill(result, reverse=args.reverse, scope=scope(args.shard, args.threads), pair=pair)
    record_check(report, scope=scope(args.shard, args.threads), pair=pair)

Each outcome is kept under its scope (`backfill/all`, `check/2of4`, ...), with the
fingerprints of the pair of stores it ran on (`dualsaver.stores.store_fingerprint`), so the
read-switch guard can tell a full check (one whole run, or every shard of one sharded run)
of the migration's own pair from a partial one or one of other stores. The newest outcome of
any scope is also kept under `backfill` / `check` for `dualsaver status`.

Recording never fails the job it records: if the status cannot be written, a warning is
logged and the guard, finding no record, refuses to switch reads (the safe side).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import structlog

from dualsaver.control import settings as settings_module
from dualsaver.control.phase import Evidence, Phase
from dualsaver.control.record import open_control_store
from dualsaver.errors import describe_error
from dualsaver.redact import redact

log = structlog.get_logger("dualsaver.evidence")

ENV_STATUS = "DUALSAVER_STATUS"
BACKFILL, REVERSE_BACKFILL, CHECK = "backfill", "reverse_backfill", "check"
STORE_BACKFILL, STORE_CHECK = "store_backfill", "store_check"  # the long-term store's items
KINDS = (BACKFILL, REVERSE_BACKFILL, CHECK, STORE_BACKFILL, STORE_CHECK)  # every outcome recorded


class LocalStatusFile:
    """The status in one JSON file, replaced atomically, writers serialized by a lock file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.where = f"file {self.path}"

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    @contextlib.contextmanager
    def _locked(self) -> Any:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(self.path.suffix + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def put_status(self, kind: str, value: dict[str, Any]) -> None:
        with self._locked():
            data = self._load()
            data[kind] = {"value": value, "recorded_at": time.time()}
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
            os.replace(tmp, self.path)

    def get_status(self, kind: str) -> dict[str, Any] | None:
        entry = self._load().get(kind)
        return entry["value"] if entry else None

    def list_status(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {k: v["value"] for k, v in self._load().items() if k.startswith(prefix)}

    def close(self) -> None:
        pass


def open_status_store(settings: Any = None) -> Any:
    """The control store when one is configured, else the local status file."""
    s = settings if settings is not None else settings_module.current()
    if s.control_url:
        return open_control_store(s.control_url, name=s.control_name)
    path = s.status_file or os.environ.get(ENV_STATUS) or settings_module.DEFAULT_STATUS_FILE
    return LocalStatusFile(path)


def _save(kind: str, value: dict[str, Any], settings: Any) -> bool:
    try:
        store = open_status_store(settings)
        try:
            store.put_status(kind, value)
        finally:
            store.close()
    except Exception as exc:  # never fail the job being recorded
        log.warning("migration_status_not_recorded", kind=kind, error=describe_error(exc))
        return False
    return True


def scope(shard: tuple[int, int] | None, thread_ids: Any = None) -> str:
    """What part of the store a run covered: `all`, one shard `IofN`, or chosen `threads`."""
    if thread_ids:
        return "threads"
    return f"{shard[0]}of{shard[1]}" if shard else "all"


def _record(kind: str, scope_: str, value: dict[str, Any], settings: Any) -> bool:
    value = {**value, "scope": scope_}
    return _save(f"{kind}/{scope_}", value, settings) and _save(kind, value, settings)


def record_backfill(
    result: Any, *, reverse: bool = False, scope: str = "all", pair: dict[str, str] | None = None,
    settings: Any = None,
) -> bool:
    """Record a finished `BackfillResult` (a dry run is not recorded). True if recorded."""
    if getattr(result, "dry_run", False):
        return False
    value = {
        "finished_at": float(getattr(result, "finished_at", 0) or time.time()),
        "started_at": float(getattr(result, "started_at", 0) or 0),
        "ok": not result.failed,
        "full": scope == "all",
        "pair": pair,
        "threads": result.threads,
        "threads_resumed": result.threads_resumed,
        "checkpoints": result.checkpoints,
        "writes": result.writes,
        "skipped": result.skipped,
        "failed": result.failed,
        "unreadable": result.unreadable,
        "exact": result.exact,
        "elapsed_s": round(result.elapsed_s, 3),
    }
    return _record(REVERSE_BACKFILL if reverse else BACKFILL, scope, value, settings)


def record_check(
    report: Any, *, scope: str | None = None, pair: dict[str, str] | None = None, settings: Any = None,
    writing_behind: str | None = None,
) -> bool:
    """Record a finished check (`DivergenceReport`); its scope, unless given, is what the
    report says it covered. `writing_behind`: why replicas may still have written new's
    copies behind when it started (the guard does not count such a check). True if recorded."""
    s = report.summary
    if scope is None:
        shard = s.get("shard")
        scope = "threads" if s.get("thread_filter") is not None else (shard.replace("/", "of") if shard else "all")
    now = time.time()
    value = {
        "finished_at": now,
        # The check proves something only about writes made before it started; it started
        # `duration_seconds` before now (its own started_at has whole seconds only).
        "started_at": now - float(s.get("duration_seconds") or 0),
        "clean": bool(report.clean),
        "full": scope == "all",
        "pair": pair,
        "divergences": len(report.divergences),
        "counts": {k: v for k, v in (s.get("counts") or {}).items() if v},
        "threads_compared": s.get("threads_compared", 0),
        "checkpoints_compared": s.get("checkpoints_compared", 0),
        "stores": {k: redact(str(v)) for k, v in (s.get("stores") or {}).items()},
        "writing_behind": writing_behind,
    }
    return _record(CHECK, scope, value, settings)


def record_store_backfill(
    result: Any, *, scope: str = "all", pair: dict[str, str] | None = None, settings: Any = None
) -> bool:
    """Record a finished backfill of the long-term store's items (`ItemBackfillResult`)."""
    if getattr(result, "dry_run", False):
        return False
    value = {"finished_at": time.time(), "ok": not result.bad, "full": scope == "all", "pair": pair,
             "items": result.items, "skipped": result.skipped, "bad": result.bad, "exact": result.exact,
             "vectors": result.vectors}
    return _record(STORE_BACKFILL, scope, value, settings)


def record_store_check(
    report: Any, *, scope: str = "all", pair: dict[str, str] | None = None, settings: Any = None,
    writing_behind: str | None = None,
) -> bool:
    """Record a finished check of the long-term store's items (their part of a report);
    `writing_behind` as for `record_check`."""
    now = time.time()
    value = {"finished_at": now, "started_at": now - float(report.summary.get("duration_seconds") or 0),
             "clean": bool(report.clean), "full": scope == "all", "pair": pair,
             "divergences": len(report.divergences),
             "items_compared": (report.summary.get("items") or {}).get("compared", 0),
             "writing_behind": writing_behind}
    return _record(STORE_CHECK, scope, value, settings)


def last(kind: str, store: Any) -> dict[str, Any] | None:
    return store.get_status(kind)


# The outcomes that say which way a migration runs, most telling first: a backfill copies
# from old to new (a reverse one names them alike), a check compares them either way round.
CHECKPOINT_RUNS = ((BACKFILL, REVERSE_BACKFILL), (CHECK,))
ITEM_RUNS = ((STORE_BACKFILL,), (STORE_CHECK,))  # ... of the long-term store's items


def recorded_pair(kinds: tuple[tuple[str, ...], ...], settings: Any = None) -> tuple[str, dict[str, Any]] | None:
    """The newest recorded outcome that names its pair of stores, from the first group of
    `kinds` that has one, as (kind, outcome); None when there is none or the record cannot
    be read (a guard that asks this then has nothing to go on, and says nothing)."""
    try:
        store = open_status_store(settings)
        try:
            groups = [[(kind, store.get_status(kind)) for kind in group] for group in kinds]
        finally:
            store.close()
    except Exception as exc:
        log.warning("migration_status_not_read", error=describe_error(exc))
        return None
    for group in groups:
        paired = [(kind, o) for kind, o in group if o and o.get("pair")]
        if paired:
            return max(paired, key=lambda ko: float(ko[1].get("finished_at") or 0))
    return None


# A run is the outcomes of one whole pass (one `all` outcome, or every shard of a sharded one).
Run = list[dict[str, Any]]


def _whole_runs(outcomes: dict[str, dict[str, Any]]) -> list[Run]:
    """The runs that cover the whole keyspace: each `all` outcome, and each set of shards
    `0ofN`..`N-1ofN` (the newest outcome of each shard), newest run first."""
    runs = [[v] for k, v in outcomes.items() if k.endswith("/all")]
    shards: dict[int, dict[int, dict[str, Any]]] = {}
    for key, value in outcomes.items():
        part = key.rsplit("/", 1)[1]
        if "of" in part:
            i, n = (int(x) for x in part.split("of"))
            shards.setdefault(n, {})[i] = value
    runs += [list(found.values()) for n, found in shards.items() if len(found) == n]
    return sorted(runs, key=lambda run: -_finished(run))


def _shards_in(outcomes: dict[str, dict[str, Any]]) -> str | None:
    """How far the newest incomplete sharded run got: `2 of 4 shards`."""
    counts: dict[int, int] = {}
    for key in outcomes:
        part = key.rsplit("/", 1)[1]
        if "of" in part:
            n = int(part.split("of")[1])
            counts[n] = counts.get(n, 0) + 1
    partial = [(have, n) for n, have in counts.items() if have < n]
    return f"{partial[-1][0]} of {partial[-1][1]} shards" if partial else None


def _finished(run: Run) -> float:
    """When the run's last part ended."""
    return max(part.get("finished_at", 0) for part in run)


def _started(run: Run) -> float:
    """When the run's first part began: it proves nothing about writes made after that."""
    return min(part["started_at"] for part in run)


def _whole(part: dict[str, Any] | None) -> bool:
    return part is not None and part.get("scope", "all") == "all"


def backfill_evidence(store: Any, pair: dict[str, str] | None) -> tuple[dict[str, Any], dict[str, str] | None]:
    """Is the forward backfill complete, and does it cover the whole store? The newest
    backfill decides; when it is part of a whole run (the last of its shards, say) the run
    decides instead, and names the migration's pair of stores when `pair` does not."""
    newest = store.get_status(BACKFILL)  # whatever it covered: for the messages
    facts: dict[str, Any] = {"backfill_at": None, "backfill_ok": False, "backfill_full": True}
    if newest:
        facts.update(backfill_at=newest["finished_at"], backfill_ok=bool(newest["ok"]),
                     backfill_full=bool(newest.get("full", True)))
    runs = _whole_runs(store.list_status(f"{BACKFILL}/"))
    if runs and _finished(runs[0]) >= (newest or {}).get("finished_at", 0) - 1e-6:
        facts.update(backfill_at=_finished(runs[0]), backfill_ok=all(v["ok"] for v in runs[0]), backfill_full=True)
        pair = pair or runs[0][0].get("pair")
    return facts, pair


def reverse_backfill_evidence(store: Any) -> dict[str, Any]:
    """The newest reverse backfill (new -> old); a partial one counts as none."""
    newest = store.get_status(REVERSE_BACKFILL)
    return {
        "reverse_backfill_at": newest["finished_at"] if newest and newest.get("full", True) else None,
        "reverse_backfill_ok": bool(newest and newest["ok"]),
    }


def _of_pair(run: Run, pair: dict[str, str] | None) -> bool:
    """Whether a check run compared the migration's own pair (an unknown pair matches)."""
    return pair is None or all(part.get("pair") in (None, pair) for part in run)


def check_evidence(store: Any, pair: dict[str, str] | None) -> dict[str, Any]:
    """Is there a clean check of the whole store, of the migration's own pair, and when did it
    start? The newest whole check of the pair decides (`_deciding_check`); without one, the
    newest check of any kind, marked as partial or as one of another pair."""
    newest = store.get_status(CHECK)
    runs = _whole_runs(store.list_status(f"{CHECK}/"))
    ours = [run for run in runs if _of_pair(run, pair)]
    run = _deciding_check(ours, newest)
    if run is not None:
        return {"check_at": _started(run), "check_clean": all(v["clean"] for v in run), "check_full": True,
                "check_divergences": sum(v["divergences"] for v in run), "check_other_pair": False,
                "check_shards": None, "check_writing_behind": _writing_behind(run)}
    facts = _no_whole_check(newest)
    facts["check_other_pair"] = bool(runs) and not ours and _whole(newest)
    facts["check_shards"] = _shards_in(store.list_status(f"{CHECK}/"))
    return facts


def _writing_behind(run: Run) -> str | None:
    """Why replicas may have written new's copies behind when a part of the run started."""
    return next((part["writing_behind"] for part in run if part.get("writing_behind")), None)


def _no_whole_check(newest: dict[str, Any] | None) -> dict[str, Any]:
    """No whole check decides: the newest check of any kind speaks for the messages, and
    counts as partial (`check_full`) when there is one."""
    if newest is None:
        return {"check_at": None, "check_clean": False, "check_full": True, "check_divergences": 0}
    return {"check_at": newest["started_at"], "check_clean": bool(newest["clean"]), "check_full": False,
            "check_divergences": int(newest["divergences"])}


def _deciding_check(ours: list[Run], newest: dict[str, Any] | None) -> Run | None:
    """The newest whole check run of the pair, unless a partial check (one shard, chosen
    threads) finished after it: then the newest check covered only a part, and none decides."""
    if not ours:
        return None
    if newest is not None and not _whole(newest) and _finished(ours[0]) < newest["finished_at"]:
        return None
    return ours[0]


def store_evidence(store: Any, required: bool) -> dict[str, Any]:
    """The long-term store's items, needed when a store pair is configured (`required`) or
    was ever backfilled: the newest whole backfill of them, and the newest whole check of
    the pair of stores that backfill copied between (a check of other stores proves nothing)."""
    backfills = _whole_runs(store.list_status(f"{STORE_BACKFILL}/"))
    runs = _whole_runs(store.list_status(f"{STORE_CHECK}/"))
    facts: dict[str, Any] = {"store_required": required or bool(backfills)}
    pair = None
    if backfills:
        facts["store_backfill_at"] = _finished(backfills[0])
        facts["store_backfill_ok"] = all(v["ok"] for v in backfills[0])
        pair = backfills[0][0].get("pair")
    checks = [run for run in runs if _of_pair(run, pair)]
    facts["store_check_other_pair"] = bool(runs) and not checks
    if checks:
        facts["store_check_at"] = _started(checks[0])
        facts["store_check_clean"] = all(v["clean"] for v in checks[0])
        facts["store_check_divergences"] = sum(v["divergences"] for v in checks[0])
        facts["store_check_writing_behind"] = _writing_behind(checks[0])
    return facts


def reads_moved_back(transitions: Any) -> float | None:
    """When the newest move from a phase that reads new (read-switch, decommission) to one
    that reads old happened, among `transitions` (oldest first); None if none did."""
    reads_new = (Phase.READ_SWITCH.value, Phase.DECOMMISSION.value)
    back = [t.changed_at for t in transitions if t.from_phase in reads_new and t.to_phase not in reads_new]
    return back[-1] if back else None


def left_shadow_write(transitions: Any) -> float | None:
    """When the newest move out of shadow-write happened, among `transitions` (oldest first);
    a record never set stood at shadow-write, the default. None if none did."""
    left = [t.changed_at for t in transitions
            if t.from_phase in (None, Phase.SHADOW_WRITE.value) and t.to_phase != Phase.SHADOW_WRITE.value]
    return left[-1] if left else None


def count_unrepaired(control_store: Any) -> dict[str, int]:
    """By store ("old", "new"): journal entries naming writes it missed (lossy live writes
    held back among them) or deletes it did not get, that no repair has settled. Reads
    must not move to a store that lacks them, forward (new) or back (old)."""
    counts = {"old": 0, "new": 0}
    for entry in control_store.journal_pending():
        counts[entry.store] = counts.get(entry.store, 0) + 1
    return counts


def evidence(
    store: Any, entered_at: float | None, *, pair: dict[str, str] | None = None,
    unrepaired: dict[str, int] | None = None, store_pair: bool = False, reads_back_at: float | None = None,
    left_shadow_write_at: float | None = None,
) -> Evidence:
    """What the guards need, from the recorded outcomes. `pair` holds the fingerprints of
    the configured old and new stores (None: the pair the newest whole backfill ran on);
    `unrepaired` counts the journal entries naming each store that no repair has settled;
    `reads_back_at`: when reads last moved back from new to old (`reads_moved_back`);
    `left_shadow_write_at`: when the fleet last left shadow-write (`left_shadow_write`);
    `store_pair`: a long-term store pair is configured, so its items need evidence too."""
    backfill, pair = backfill_evidence(store, pair)
    return Evidence(
        **backfill,
        **reverse_backfill_evidence(store),
        **check_evidence(store, pair),
        **store_evidence(store, store_pair),
        unrepaired_new=(unrepaired or {}).get("new", 0),
        unrepaired_old=(unrepaired or {}).get("old", 0),
        reads_back_at=reads_back_at,
        left_shadow_write_at=left_shadow_write_at,
        entered_at=entered_at,
    )
