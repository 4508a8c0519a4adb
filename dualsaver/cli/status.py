"""`dualsaver status`: where the migration stands, in one screen (or `--json`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dualsaver.cli.options import add_command

EXIT_OK, EXIT_UNHEALTHY, EXIT_CANNOT = 0, 1, 2

EPILOG = """\
examples:
  # everything from the settings file the fleet uses
  dualsaver status --config config/dualsaver.toml

  # for a script or a dashboard
  DUALSAVER_SETTINGS=config/dualsaver.toml dualsaver status --json | jq .phase

  # stores named on the command line (or $DUALSAVER_OLD_URL / $DUALSAVER_NEW_URL)
  dualsaver status --old sqlite:///app.sqlite --new postgresql://app@db/app

Shown: the phase in force here and where it came from (argument, $DUALSAVER_PHASE, the
settings file or the shared phase record), the record's own phase and the replicas that
follow it, whether each store answers (URLs shown with passwords masked), the journal's
depth (secondary writes waiting for repair), the last backfill and its progress, and the
last check's verdict and age.

exit status: 0 everything reachable, 1 a store or the phase record is unreachable,
2 could not run (bad settings file).
"""


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "status",
        help="phase, stores, journal, last backfill and check, in one screen",
        description="Where the migration stands: phase and its origin, stores, journal, backfill, check.",
        epilog=EPILOG,
    )
    p.add_argument("--config", metavar="PATH", help="settings file (default $DUALSAVER_SETTINGS)")
    p.add_argument("--old", metavar="URL", help="the store being left (default: settings, $DUALSAVER_OLD_URL)")
    p.add_argument("--new", metavar="URL", help="the store being moved to (default: settings, $DUALSAVER_NEW_URL)")
    p.add_argument("--control", "--record", dest="record", metavar="URL",
                   help="the fleet's control store (default: settings, $DUALSAVER_CONTROL_URL)")
    p.add_argument("--journal", metavar="PATH", help="the journal file (default: settings, $DUALSAVER_JOURNAL)")
    p.add_argument("--backfill-state", metavar="PATH",
                   help="the backfill progress file (default .dualsaver/backfill.sqlite)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- probes


def probe_store(url: str | None) -> dict[str, Any]:
    """Does the store answer? Never creates anything; the URL is shown redacted."""
    from dualsaver.errors import describe_error
    from dualsaver.errors import StoreURLError
    from dualsaver.redact import redact, scrub
    from dualsaver.stores.urls import parse_store_url

    if not url:
        return {"url": None, "reachable": None, "detail": "not configured"}
    out: dict[str, Any] = {"url": redact(url)}
    try:
        spec = parse_store_url(url)
        out["kind"] = spec.kind
        if missing := _missing_driver(spec.kind):  # the server may answer; dualsaver could not open it
            out["reachable"], out["detail"] = False, f"cannot be opened here: {missing}"
            return out
        out["reachable"], out["detail"] = _PROBES[spec.kind](spec)
    except StoreURLError as exc:
        out["reachable"], out["detail"] = False, str(exc)
    except Exception as exc:
        out["reachable"], out["detail"] = False, scrub(describe_error(exc), url)
    return out


# The module each kind of store is opened with (the probes themselves need less).
_DRIVERS = {
    "sqlite": ("langgraph.checkpoint.sqlite",), "postgres": ("langgraph.checkpoint.postgres", "psycopg"),
    "redis": ("redis",), "langgraph-redis": ("langgraph.checkpoint.redis",),
}


def _missing_driver(kind: str) -> str | None:
    """The install hint for the first driver of `kind` that does not import, or None."""
    import importlib

    from dualsaver.errors import install_hint

    for module in _DRIVERS.get(kind, ()):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            return install_hint(exc.name)
    return None


def _probe_sqlite(spec: Any) -> tuple[bool, str]:
    if spec.target == ":memory:":
        return True, "in-memory database (this process only)"
    path = Path(spec.target)
    if not path.exists():
        return False, f"no such file: {path}"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'").fetchone()
    finally:
        conn.close()
    return True, "checkpoint tables present" if row else "reachable; no checkpoint tables yet"


def _probe_postgres(spec: Any) -> tuple[bool, str]:
    import psycopg

    with psycopg.connect(spec.target, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('checkpoints') IS NOT NULL").fetchone()
        present = bool(row and row[0])
        version = conn.info.server_version
    tables = "checkpoint tables present" if present else "no checkpoint tables yet"
    return True, f"PostgreSQL {version // 10000}; {tables}"


def _probe_redis(spec: Any) -> tuple[bool, str]:
    from dualsaver.redis.url import parse_redis_url, sync_client

    target = parse_redis_url(spec.url, socket_timeout=5, socket_connect_timeout=5)
    client = sync_client(target)
    try:
        client.ping()
    finally:
        client.close()
    return True, "cluster answers PING" if target.cluster else "answers PING"


def _probe_langgraph_redis(spec: Any) -> tuple[bool, str]:
    from dualsaver.redis.url import parse_redis_url, sync_client

    target = parse_redis_url(spec.url, socket_timeout=5, socket_connect_timeout=5)
    target.client["protocol"] = 2
    client = sync_client(target)
    try:
        client.ping()
        modules = {_text(m[m.index(b"name") + 1]) for m in client.execute_command("MODULE", "LIST")}
        indexes = {_text(n) for n in client.execute_command("FT._LIST")} if "search" in modules else set()
    finally:
        client.close()
    missing = sorted({"ReJSON", "search"} - modules)
    if missing:
        return False, f"answers PING, but lacks the module(s) {', '.join(missing)} the official saver needs"
    present = target.saver.get("checkpoint_prefix", "checkpoint") in indexes
    index = "checkpoint index present" if present else "no checkpoint index yet"
    return True, f"RedisJSON and RediSearch loaded; {index}"


def _probe_factory(spec: Any) -> tuple[bool, str]:
    import importlib

    module, _, name = spec.target.partition(":")
    found = callable(getattr(importlib.import_module(module), name, None))
    return found, "factory importable (not called)" if found else f"{module} has no callable {name!r}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _probe_memory(spec: Any) -> tuple[bool, str]:
    return True, "in-memory store (this process only)"


_PROBES = {
    "sqlite": _probe_sqlite,
    "postgres": _probe_postgres,
    "redis": _probe_redis,
    "langgraph-redis": _probe_langgraph_redis,
    "python": _probe_factory,
    "memory": _probe_memory,
}


def journal_depth(path: str | None) -> dict[str, Any]:
    from dualsaver.control.journal import DEFAULT_PATH, ENV_PATH

    chosen = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    if not Path(chosen).exists():
        return {"path": chosen, "depth": 0, "exists": False}
    conn = sqlite3.connect(f"file:{chosen}?mode=ro", uri=True, timeout=5)
    try:
        (depth,) = conn.execute("SELECT COUNT(*) FROM journal WHERE repaired_at IS NULL").fetchone()
        threads = conn.execute(
            "SELECT COUNT(DISTINCT thread_id) FROM journal WHERE repaired_at IS NULL"
        ).fetchone()[0]
        held = conn.execute(
            "SELECT thread_id, error FROM journal WHERE repaired_at IS NULL AND error LIKE 'LossyValue:%'"
        ).fetchall()
    except sqlite3.Error as exc:
        return {"path": chosen, "depth": None, "exists": True, "error": str(exc)}
    finally:
        conn.close()
    return {"path": chosen, "depth": int(depth), "threads": int(threads), "exists": True, "lossy": lossy_view(held)}


def lossy_view(entries: list[tuple[str | None, str]]) -> dict[str, Any]:
    """Writes held back because the store cannot hold them faithfully (journaled as
    `LossyValue`, see dualsaver.preflight.live): entries, threads, and the rules named."""
    rules: dict[str, int] = {}
    for _, error in entries:
        if found := re.search(r"\[rule ([^;\]]+)", error or ""):
            rules[found.group(1)] = rules.get(found.group(1), 0) + 1
    return {"entries": len(entries), "threads": len({t for t, _ in entries}), "rules": rules}


def lossy_line(lossy: dict[str, Any] | None) -> list[str]:
    if not lossy or not lossy["entries"]:
        return []
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(lossy["rules"].items()))
    return [f"          {lossy['entries']} write(s) in {lossy['threads']} thread(s) held back: the store cannot"
            f" hold them faithfully ({rules}); reads cannot switch until they are repaired"]


def backfill_progress(path: str | None) -> list[dict[str, Any]]:
    """Jobs in the backfill progress file: threads done so far, finished or running."""
    from dualsaver.migrate.progress import DEFAULT_PATH, ENV_PATH

    chosen = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    if not Path(chosen).exists():
        return []
    conn = sqlite3.connect(f"file:{chosen}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT j.old, j.new, j.shard, j.started_at, j.finished_at,"
            " (SELECT COUNT(*) FROM done d WHERE d.job = j.job),"
            " (SELECT COALESCE(SUM(checkpoints), 0) FROM done d WHERE d.job = j.job)"
            " FROM jobs j ORDER BY j.started_at DESC LIMIT 5"
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [
        {
            "old": r[0], "new": r[1], "shard": r[2], "started_at": r[3], "finished_at": r[4],
            "running": r[4] is None, "threads_done": r[5], "checkpoints_added": r[6],
        }
        for r in rows
    ]


# --------------------------------------------------------------------------- gathering


def gather(args: argparse.Namespace) -> dict[str, Any]:
    from dualsaver.control import evidence as migration_status
    from dualsaver.control import settings as settings_module
    from dualsaver.control.sources import phase_source
    from dualsaver.control.record import open_phase_record
    from dualsaver.control.throttle import FleetThrottle
    from dualsaver.errors import RecordUnavailable
    from dualsaver.redact import redact

    s = settings_module.current(args.config)
    if args.record:
        s = settings_module.Settings(**{**settings_module._as_dict(s), "record_url": args.record})
    doc: dict[str, Any] = {"settings_file": s.path if s.path != "<settings>" else None}

    try:
        source = phase_source(None, settings=s, start=False)
        doc["phase"] = {"phase": source.current().value, "origin": source.origin}
        close = getattr(source, "close", None)
        if close:
            close()
    except RecordUnavailable as exc:
        doc["phase"] = {"phase": None, "origin": f"unknown: {exc}"}

    record_doc: dict[str, Any] | None = None
    status_store: Any = None
    if s.record_url:
        record = open_phase_record(s.record_url, name=s.record_name)
        record_doc = {"url": redact(s.record_url), "name": s.record_name}
        try:
            state = record.read()
            replicas = record.replicas()
            now = time.time()
            record_doc.update(
                reachable=True,
                phase=state.phase.value if state else None,
                state=state.as_dict() if state else None,
                replicas_live=sum(r.alive(now) for r in replicas),
                replicas=[{**r.as_dict(), "alive": r.alive(now), "age_seconds": round(now - r.seen_at, 1)}
                          for r in replicas],
                shards=[shard_view(job, now) for job in record.jobs()],
                fleet_journal={"depth": len(pending := record.journal_pending()),
                               "new": sum(e.store == "new" for e in pending),
                               "lossy": lossy_view([(e.thread_id, e.error) for e in pending
                                                    if (e.error or "").startswith("LossyValue:")]),
                               "threads": len({e.thread_id for e in pending})},
                throttle=asdict(limits) if (limits := FleetThrottle(record).stored()) else None,
                tiered=tiered_view(record.list_status("tiered/"), now),
            )
            status_store = record
        except RecordUnavailable as exc:
            record_doc.update(reachable=False, detail=str(exc))
            record.close()
    doc["record"] = record_doc

    doc["stores"] = {
        "old": probe_store(args.old or s.old_url),
        "new": probe_store(args.new or s.new_url),
    }
    doc["journal"] = journal_depth(args.journal or s.journal)

    if status_store is None and not s.record_url:
        status_store = migration_status.open_status_store(s)
    now = time.time()
    for key, kind in (
        ("backfill", migration_status.BACKFILL),
        ("reverse_backfill", migration_status.REVERSE_BACKFILL),
        ("check", migration_status.CHECK),
        ("store_backfill", migration_status.STORE_BACKFILL),  # the long-term store's items
        ("store_check", migration_status.STORE_CHECK),
    ):
        try:
            value = status_store.get_status(kind) if status_store is not None else None
        except RecordUnavailable:
            value = None
        if value is not None:
            if key != "check":
                value = with_its_shards(value, status_store.list_status(f"{kind}/"))
            value = {**value, "age_seconds": round(now - value["finished_at"], 1)}
        doc[key] = value
    if status_store is not None:
        status_store.close()
    doc["status_kept_in"] = (
        f"phase record {redact(s.record_url)}" if s.record_url else migration_status.open_status_store(s).where
    )
    doc["backfill_progress"] = backfill_progress(args.backfill_state)
    return doc


def with_its_shards(value: dict[str, Any], outcomes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The newest backfill outcome as status shows it: one shard's (`scope` IofN) summed with
    the other shards of its run when all are in, so two finished shards of 2 read as complete,
    not as the last one's part; `shards` says how many are in."""
    scope = str(value.get("scope", "all"))
    if "of" not in scope:
        return value
    count = int(scope.split("of")[1])
    parts = [v for k, v in outcomes.items() if k.endswith(f"of{count}")]
    summed = {field: sum(int(p.get(field) or 0) for p in parts) for field in ("threads", "checkpoints", "failed")}
    if len(parts) < count:
        return {**value, "shards": f"{len(parts)} of {count}"}
    return {**value, **summed, "ok": all(p.get("ok") for p in parts), "full": True, "shards": f"{count} of {count}"}


STALE_AFTER = 60.0  # seconds without a heartbeat after which a running shard is called stale


def shard_view(job: dict[str, Any], now: float) -> dict[str, Any]:
    """One backfill job (a shard, or a whole run) as status shows it: done, running or
    stale; how many threads remain, at what rate, and when it should end."""
    done, total = int(job.get("threads_done") or 0), job.get("total")
    elapsed = max((job.get("finished_at") or job["updated_at"]) - job["started_at"], 1e-9)
    rate = done / elapsed
    remaining = max(total - done, 0) if total is not None else None
    state = "done" if job.get("finished_at") else ("stale" if now - job["updated_at"] > STALE_AFTER else "running")
    eta = remaining / rate if remaining is not None and rate > 0 and state == "running" else None
    return {
        "shard": job.get("shard"), "old": job.get("old"), "new": job.get("new"), "runner": job.get("runner"),
        "state": state, "threads_done": done, "total": total, "remaining": remaining,
        "failed": job.get("failed", 0), "rate_per_s": round(rate, 2), "eta_seconds": round(eta, 1) if eta else None,
        "heartbeat_age_seconds": round(now - job["updated_at"], 1),
    }


def tiered_view(reports: dict[str, dict[str, Any]], now: float) -> dict[str, Any] | None:
    """TieredSaver replicas' counters, summed (None: no replica reported any)."""
    if not reports:
        return None
    totals: dict[str, int] = {}
    for value in reports.values():
        for key, n in value.items():
            if key != "at":
                totals[key] = totals.get(key, 0) + int(n)
    reads = sum(totals.get(k, 0) for k in ("hit", "miss", "stale"))
    return {
        "replicas": len(reports), "counts": totals,
        "hit_rate": round(totals.get("hit", 0) / reads, 3) if reads else None,
        "newest_report_age_seconds": round(now - max(v.get("at", 0) for v in reports.values()), 1),
    }


def healthy(doc: dict[str, Any]) -> bool:
    stores_ok = all(v.get("reachable") is not False for v in doc["stores"].values())
    record_ok = doc["record"] is None or doc["record"].get("reachable", False)
    return stores_ok and record_ok


# --------------------------------------------------------------------------- rendering


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def render(doc: dict[str, Any]) -> str:
    from dualsaver.control.throttle import Limits

    lines = []
    ph = doc["phase"]
    lines.append(f"phase:    {ph['phase'] or 'UNKNOWN'}  (from {ph['origin']})")
    rec = doc["record"]
    if rec is not None:
        if rec.get("reachable"):
            recorded = rec["phase"] or "(never set)"
            lines.append(
                f"record:   {rec['url']} [{rec['name']}]: {recorded}; {rec['replicas_live']} live replica(s)"
            )
            for r in rec["replicas"]:
                state = "live" if r["alive"] else "silent"
                lines.append(f"          {r['replica']}: {r['phase']}, heartbeat {_age(r['age_seconds'])} ({state}),"
                             f" {r.get('journal_depth', 0)} journal entr(ies) not shipped")
            fj = rec["fleet_journal"]
            tail = ""
            if fj["depth"]:
                tail = f" in {fj['threads']} thread(s) ({fj['new']} naming new); run `dualsaver repair --journal`"
            lines.append(f"fleet journal: {fj['depth']} entr(ies) waiting{tail}")
            lines += lossy_line(fj.get("lossy"))
            if tiered := rec.get("tiered"):
                counts = ", ".join(f"{k} {v}" for k, v in sorted(tiered["counts"].items()))
                rate = f", hit rate {tiered['hit_rate']:.1%}" if tiered["hit_rate"] is not None else ""
                lines.append(f"tiered:   {tiered['replicas']} replica(s) reporting: {counts}{rate}"
                             f" (newest report {_age(tiered['newest_report_age_seconds'])})")
            if rec.get("throttle"):
                limits = Limits(**rec["throttle"]).describe()
                lines.append(f"throttle: {limits} for every job (`dualsaver throttle --clear` lifts it)")
            for sh in rec["shards"]:
                left = "" if sh["remaining"] is None else f", {sh['remaining']} left"
                eta = f", ETA {sh['eta_seconds']:.0f}s" if sh["eta_seconds"] else ""
                lines.append(f"shard {sh['shard']}: {sh['state']}; {sh['threads_done']} thread(s) done{left},"
                             f" {sh['rate_per_s']:g} thread(s)/s{eta}; heartbeat {_age(sh['heartbeat_age_seconds'])}"
                             f" ({sh['runner'] or '?'})")
        else:
            lines.append(f"record:   {rec['url']}: UNREACHABLE ({rec['detail']})")
    for side in ("old", "new"):
        st = doc["stores"][side]
        mark = {True: "reachable", False: "UNREACHABLE", None: "-"}[st["reachable"]]
        where = st["url"] or "(not configured)"
        lines.append(f"{side + ':':<9} {where}: {mark}" + (f" ({st['detail']})" if st.get("detail") else ""))
    j = doc["journal"]
    if j.get("depth") is None:
        lines.append(f"journal:  {j['path']}: unreadable ({j.get('error')})")
    elif not j["exists"]:
        lines.append(f"journal:  {j['path']}: no journal yet (no secondary write has failed here)")
    else:
        tail = f" in {j['threads']} thread(s); run `dualsaver repair`" if j["depth"] else ""
        lines.append(f"journal:  {j['path']}: {j['depth']} entr{'y' if j['depth'] == 1 else 'ies'} waiting{tail}")
        lines += lossy_line(j.get("lossy"))
    for key, title in (("backfill", "backfill"), ("reverse_backfill", "reverse backfill")):
        b = doc[key]
        if b is None:
            if key == "backfill":
                lines.append("backfill: none recorded")
            continue
        failed = f"{b['failed']} thread(s) FAILED"
        verdict = "complete" if b["ok"] and b.get("full", True) else ("partial" if b["ok"] else failed)
        shards = f" by {b['shards']} shards" if b.get("shards") else ""
        lines.append(
            f"{title + ':':<9} {verdict}; {b['threads']} thread(s) copied, {b['checkpoints']} checkpoint(s)"
            f" added{shards}"
            f"; finished {_age(b['age_seconds'])}"
        )
    for job in doc["backfill_progress"]:
        if job["running"]:
            lines.append(
                f"          running (or interrupted): {job['threads_done']} thread(s) done since"
                f" {_age(time.time() - job['started_at'])} ({job['old']} -> {job['new']}, shard {job['shard']})"
            )
    c = doc["check"]
    if c is None:
        lines.append("check:    none recorded")
    else:
        verdict = "CLEAN" if c["clean"] else f"{c['divergences']} DIVERGENCE(S)"
        scope = "" if c.get("full", True) else " (partial: one shard or chosen threads)"
        lines.append(
            f"check:    {verdict}{scope}; {c['threads_compared']} thread(s) compared; finished {_age(c['age_seconds'])}"
        )
    lines += _store_lines(doc)
    lines.append(f"outcomes kept in: {doc['status_kept_in']}")
    return "\n".join(lines)


def _store_lines(doc: dict[str, Any]) -> list[str]:
    """The long-term store's backfill and check, when either was recorded."""
    b, c = doc.get("store_backfill"), doc.get("store_check")
    lines = []
    if b is not None:
        verdict = "complete" if b["ok"] else f"{b['bad']} bad item(s)"
        lines.append(f"store backfill: {verdict}; {b['items']} item(s) copied, vectors {b['vectors']},"
                     f" {'exact' if b['exact'] else 'APPROXIMATE'}; finished {_age(b['age_seconds'])}")
    if c is not None:
        verdict = "CLEAN" if c["clean"] else f"{c['divergences']} DIVERGENCE(S)"
        lines.append(f"store check: {verdict}; {c['items_compared']} item(s) compared; finished {_age(c['age_seconds'])}")
    return lines


def run(args: argparse.Namespace) -> int:
    from dualsaver.errors import RecordUnavailable
    from dualsaver.errors import SettingsError

    try:
        doc = gather(args)
    except (SettingsError, RecordUnavailable) as exc:
        print(f"dualsaver status: {exc}", file=sys.stderr)
        return EXIT_CANNOT
    doc["healthy"] = healthy(doc)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render(doc))
    return EXIT_OK if doc["healthy"] else EXIT_UNHEALTHY
