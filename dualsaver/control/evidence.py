"""Where the last backfill and the last check record their outcome and time.

The read-switch guard (`dualsaver phase set read-switch`) and `dualsaver status` read them.
They go to the phase record's store when one is configured (so every operator and machine
sees the same facts), else to a local JSON file (`migration.status_file`,
`$DUALSAVER_STATUS`, default `.dualsaver/status.json`).

    record_backfill(result, reverse=args.reverse, partial=bool(args.shard or args.threads))
    record_check(report)

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
from dualsaver.control.phase import Evidence
from dualsaver.control.record import open_phase_record
from dualsaver.errors import describe_error
from dualsaver.redact import redact

log = structlog.get_logger("dualsaver.evidence")

ENV_STATUS = "DUALSAVER_STATUS"
BACKFILL, REVERSE_BACKFILL, CHECK = "backfill", "reverse_backfill", "check"


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

    def close(self) -> None:
        pass


def open_status_store(settings: Any = None) -> Any:
    """The phase record when one is configured, else the local status file."""
    s = settings if settings is not None else settings_module.current()
    if s.record_url:
        return open_phase_record(s.record_url, name=s.record_name)
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


def record_backfill(
    result: Any, *, reverse: bool = False, partial: bool = False, settings: Any = None
) -> bool:
    """Record a finished `BackfillResult` (a dry run is not recorded). True if recorded."""
    if getattr(result, "dry_run", False):
        return False
    value = {
        "finished_at": float(getattr(result, "finished_at", 0) or time.time()),
        "started_at": float(getattr(result, "started_at", 0) or 0),
        "ok": not result.failed,
        "full": not partial,
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
    return _save(REVERSE_BACKFILL if reverse else BACKFILL, value, settings)


def record_check(report: Any, *, settings: Any = None) -> bool:
    """Record a finished check (`DivergenceReport`). True if recorded."""
    s = report.summary
    now = time.time()
    value = {
        "finished_at": now,
        # The check proves something only about writes made before it started; it started
        # `duration_seconds` before now (its own started_at has whole seconds only).
        "started_at": now - float(s.get("duration_seconds") or 0),
        "clean": bool(report.clean),
        "full": not s.get("shard") and s.get("thread_filter") is None,
        "divergences": len(report.divergences),
        "counts": {k: v for k, v in (s.get("counts") or {}).items() if v},
        "threads_compared": s.get("threads_compared", 0),
        "checkpoints_compared": s.get("checkpoints_compared", 0),
        "stores": {k: redact(str(v)) for k, v in (s.get("stores") or {}).items()},
    }
    return _save(CHECK, value, settings)


def last(kind: str, store: Any) -> dict[str, Any] | None:
    return store.get_status(kind)


def evidence(store: Any, entered_at: float | None) -> Evidence:
    """What the guards need, from the recorded outcomes."""
    b, r, c = store.get_status(BACKFILL), store.get_status(REVERSE_BACKFILL), store.get_status(CHECK)
    return Evidence(
        backfill_at=b["finished_at"] if b else None,
        backfill_ok=bool(b and b["ok"]),
        backfill_full=bool(b is None or b.get("full", True)),
        reverse_backfill_at=r["finished_at"] if r and r.get("full", True) else None,
        reverse_backfill_ok=bool(r and r["ok"]),
        check_at=c["started_at"] if c else None,
        check_clean=bool(c and c["clean"]),
        check_full=bool(c is None or c.get("full", True)),
        check_divergences=int(c["divergences"]) if c else 0,
        entered_at=entered_at,
    )
