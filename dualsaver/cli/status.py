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
from typing import Any

from dualsaver.cli.options import add_command, add_control_argument

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
settings file or the control store's phase record), the control store's own phase and the
replicas that follow it, whether each store answers (URLs shown with passwords masked), the journal's
depth (secondary writes waiting for repair), the last backfill and its progress, and the
last check's verdict and age.

exit status: 0 everything reachable, 1 a store or the control store is unreachable,
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
    add_control_argument(p, help="the fleet's control store (default: settings, $DUALSAVER_CONTROL_URL)")
    p.add_argument("--journal", metavar="PATH", help="the journal file (default: settings, $DUALSAVER_JOURNAL)")
    p.add_argument("--backfill-state", metavar="PATH",
                   help="the backfill progress file (default .dualsaver/backfill.sqlite)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- gathering


def gather(args: argparse.Namespace) -> dict[str, Any]:
    """Everything status shows, as a JSON-ready document (its keys in the order shown)."""
    from dualsaver.cli.options import settings_for
    from dualsaver.control import evidence as migration_status
    from dualsaver.control.progress import recent_jobs
    from dualsaver.redact import redact

    s = settings_for(args)
    doc: dict[str, Any] = {"settings_file": s.path if s.path != "<settings>" else None}
    doc["phase"] = phase_view(s)
    doc["record"], status_store = control_view(s)  # "record": the key scripts already read
    doc["stores"] = {"old": probe_store(args.old or s.old_url), "new": probe_store(args.new or s.new_url)}
    doc["journal"] = journal_view(args.journal or s.journal)
    if status_store is None and not s.control_url:
        status_store = migration_status.open_status_store(s)
    doc.update(outcomes_view(status_store))
    doc["status_kept_in"] = (
        f"control store {redact(s.control_url)}" if s.control_url else migration_status.open_status_store(s).where
    )
    doc["backfill_progress"] = recent_jobs(args.backfill_state)
    return doc


def probe_store(url: str | None) -> dict[str, Any]:
    """Does the store answer? (`dualsaver.stores.probe.probe_store`, named here too.)"""
    from dualsaver.stores.probe import probe_store as probe

    return probe(url)


def phase_view(settings: Any) -> dict[str, Any]:
    """The phase in force here and where it came from (`unknown` when the control store is away)."""
    from dualsaver.control.sources import phase_source
    from dualsaver.errors import RecordUnavailable

    try:
        source = phase_source(None, settings=settings, start=False)
        view: dict[str, Any] = {"phase": source.current().value, "origin": source.origin}
        if close := getattr(source, "close", None):
            close()
    except RecordUnavailable as exc:
        view = {"phase": None, "origin": f"unknown: {exc}"}
    return view


def control_view(settings: Any) -> tuple[dict[str, Any] | None, Any]:
    """The control store's part of the document (None without one), and the store itself,
    left open to read the outcomes from (None when it is unreachable)."""
    from dualsaver.control.record import open_control_store
    from dualsaver.errors import RecordUnavailable
    from dualsaver.redact import redact

    if not settings.control_url:
        return None, None
    control = open_control_store(settings.control_url, name=settings.control_name)
    view: dict[str, Any] = {"url": redact(settings.control_url), "name": settings.control_name}
    try:
        view.update(reachable=True, **_fleet_view(control, time.time()))
    except RecordUnavailable as exc:
        view.update(reachable=False, detail=str(exc))
        control.close()
        return view, None
    return view, control


def _fleet_view(control: Any, now: float) -> dict[str, Any]:
    """What the control store says of the fleet: the recorded phase, the replicas, the
    backfill jobs, the shared journal, the throttle and the tiered savers' counters."""
    from dualsaver.control.journal import Backlog
    from dualsaver.control.throttle import FleetThrottle

    state = control.read()
    replicas = control.replicas()
    backlog = Backlog.of(control.journal_pending())
    limits = FleetThrottle(control).stored()
    return {
        "phase": state.phase.value if state else None,
        "state": state.as_dict() if state else None,
        "replicas_live": sum(r.alive(now) for r in replicas),
        "replicas": [{**r.as_dict(), "alive": r.alive(now), "age_seconds": round(now - r.seen_at, 1)}
                     for r in replicas],
        "shards": [shard_view(job, now) for job in control.jobs()],
        "fleet_journal": {"depth": backlog.depth, "new": backlog.new, "old": backlog.old,
                          "lossy": lossy_view(backlog.lossy), "threads": backlog.threads},
        "throttle": asdict(limits) if limits else None,
        "tiered": tiered_view(control.list_status("tiered/"), now),
    }


def journal_view(path: str | None) -> dict[str, Any]:
    """This machine's journal file: entries waiting for repair, their threads, the lossy ones."""
    from dualsaver.control.journal import DEFAULT_PATH, ENV_PATH, read_backlog

    chosen = path or os.environ.get(ENV_PATH) or DEFAULT_PATH
    try:
        backlog = read_backlog(chosen)
    except sqlite3.Error as exc:
        return {"path": chosen, "depth": None, "exists": True, "error": str(exc)}
    if backlog is None:
        return {"path": chosen, "depth": 0, "exists": False}
    return {"path": chosen, "depth": backlog.depth, "threads": backlog.threads, "exists": True,
            "lossy": lossy_view(backlog.lossy)}


def lossy_view(entries: list[tuple[str | None, str]]) -> dict[str, Any]:
    """Writes held back because the store cannot hold them faithfully (journaled as
    `LossyValue`, see dualsaver.preflight.live): entries, threads, and the rules named."""
    rules: dict[str, int] = {}
    for _, error in entries:
        if found := re.search(r"\[rule ([^;\]]+)", error or ""):
            rules[found.group(1)] = rules.get(found.group(1), 0) + 1
    return {"entries": len(entries), "threads": len({t for t, _ in entries}), "rules": rules}


def outcomes_view(status_store: Any) -> dict[str, Any]:
    """The last outcome of each kind (None: none recorded, or the store is away); a sharded
    backfill's with its other shards. Closes `status_store`."""
    from dualsaver.control.evidence import CHECK, KINDS
    from dualsaver.errors import RecordUnavailable

    now = time.time()
    view: dict[str, Any] = {}
    for kind in KINDS:
        try:
            value = status_store.get_status(kind) if status_store is not None else None
        except RecordUnavailable:
            value = None
        if value is not None:
            if kind != CHECK:
                value = with_its_shards(value, status_store.list_status(f"{kind}/"))
            value = {**value, "age_seconds": round(now - value["finished_at"], 1)}
        view[kind] = value
    if status_store is not None:
        status_store.close()
    return view


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
    control_ok = doc["record"] is None or doc["record"].get("reachable", False)
    return stores_ok and control_ok


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
    """The document as the screen shows it, one section after the other."""
    ph = doc["phase"]
    lines = [f"phase:    {ph['phase'] or 'UNKNOWN'}  (from {ph['origin']})"]
    if doc["record"] is not None:
        lines += _control_lines(doc["record"])
    lines += _store_url_lines(doc["stores"])
    lines += _journal_lines(doc["journal"])
    lines += _backfill_lines(doc)
    lines += _running_lines(doc["backfill_progress"])
    lines += _check_lines(doc["check"])
    lines += _store_lines(doc)
    lines.append(f"outcomes kept in: {doc['status_kept_in']}")
    return "\n".join(lines)


def _control_lines(rec: dict[str, Any]) -> list[str]:
    """The control store: its phase and replicas, the fleet's journal, tiered counters, the
    throttle and the backfill jobs (or that it is unreachable)."""
    if not rec.get("reachable"):
        return [f"control:  {rec['url']}: UNREACHABLE ({rec['detail']})"]
    recorded = rec["phase"] or "(never set)"
    lines = [f"control:  {rec['url']} [{rec['name']}]: {recorded}; {rec['replicas_live']} live replica(s)"]
    for r in rec["replicas"]:
        state = "live" if r["alive"] else "silent"
        lines.append(f"          {r['replica']}: {r['phase']}, heartbeat {_age(r['age_seconds'])} ({state}),"
                     f" {r.get('journal_depth', 0)} journal entr(ies) not shipped")
    fj = rec["fleet_journal"]
    tail = ""
    if fj["depth"]:
        tail = (f" in {fj['threads']} thread(s) ({fj['new']} naming new, {fj['old']} naming old: reads cannot"
                " move to a store that lacks them); run `dualsaver repair --journal`")
    lines.append(f"fleet journal: {fj['depth']} entr(ies) waiting{tail}")
    lines += lossy_line(fj.get("lossy"))
    lines += _tiered_line(rec.get("tiered"))
    lines += _throttle_line(rec.get("throttle"))
    lines += [_shard_line(sh) for sh in rec["shards"]]
    return lines


def _tiered_line(tiered: dict[str, Any] | None) -> list[str]:
    if not tiered:
        return []
    counts = ", ".join(f"{k} {v}" for k, v in sorted(tiered["counts"].items()))
    rate = f", hit rate {tiered['hit_rate']:.1%}" if tiered["hit_rate"] is not None else ""
    return [f"tiered:   {tiered['replicas']} replica(s) reporting: {counts}{rate}"
            f" (newest report {_age(tiered['newest_report_age_seconds'])})"]


def _throttle_line(throttle: dict[str, Any] | None) -> list[str]:
    from dualsaver.control.throttle import Limits

    if not throttle:
        return []
    return [f"throttle: {Limits(**throttle).describe()} for every job (`dualsaver throttle --clear` lifts it)"]


def _unit(job: dict[str, Any]) -> str:
    """What a backfill job counts: the long-term store's (its `old` says "items:") copies
    namespaces, the checkpoints' copies threads."""
    return "namespace(s)" if str(job.get("old") or "").startswith("items:") else "thread(s)"


def _shard_line(sh: dict[str, Any]) -> str:
    left = "" if sh["remaining"] is None else f", {sh['remaining']} left"
    eta = f", ETA {sh['eta_seconds']:.0f}s" if sh["eta_seconds"] else ""
    unit = _unit(sh)
    return (f"shard {sh['shard']}: {sh['state']}; {sh['threads_done']} {unit} done{left},"
            f" {sh['rate_per_s']:g} {unit}/s{eta}; heartbeat {_age(sh['heartbeat_age_seconds'])}"
            f" ({sh['runner'] or '?'})")


def _store_url_lines(stores: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for side in ("old", "new"):
        st = stores[side]
        mark = {True: "reachable", False: "UNREACHABLE", None: "-"}[st["reachable"]]
        where = st["url"] or "(not configured)"
        lines.append(f"{side + ':':<9} {where}: {mark}" + (f" ({st['detail']})" if st.get("detail") else ""))
    return lines


def _journal_lines(j: dict[str, Any]) -> list[str]:
    if j.get("depth") is None:
        return [f"journal:  {j['path']}: unreadable ({j.get('error')})"]
    if not j["exists"]:
        return [f"journal:  {j['path']}: no journal yet (no secondary write has failed here)"]
    tail = f" in {j['threads']} thread(s); run `dualsaver repair`" if j["depth"] else ""
    return [f"journal:  {j['path']}: {j['depth']} entr{'y' if j['depth'] == 1 else 'ies'} waiting{tail}",
            *lossy_line(j.get("lossy"))]


def lossy_line(lossy: dict[str, Any] | None) -> list[str]:
    if not lossy or not lossy["entries"]:
        return []
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(lossy["rules"].items()))
    return [f"          {lossy['entries']} write(s) in {lossy['threads']} thread(s) held back: the store cannot"
            f" hold them faithfully ({rules}); reads cannot switch until they are repaired"]


def _backfill_lines(doc: dict[str, Any]) -> list[str]:
    """The last forward backfill (or that there is none), and the last reverse one if any."""
    lines = []
    for key, title in (("backfill", "backfill"), ("reverse_backfill", "reverse backfill")):
        b = doc[key]
        if b is None:
            lines += ["backfill: none recorded"] if key == "backfill" else []
            continue
        failed = f"{b['failed']} thread(s) FAILED"
        verdict = "complete" if b["ok"] and b.get("full", True) else ("partial" if b["ok"] else failed)
        shards = f" by {b['shards']} shards" if b.get("shards") else ""
        lines.append(f"{title + ':':<9} {verdict}; {b['threads']} thread(s) copied, {b['checkpoints']} checkpoint(s)"
                     f" added{shards}; finished {_age(b['age_seconds'])}")
    return lines


def _running_lines(jobs: list[dict[str, Any]]) -> list[str]:
    """Backfill jobs of the local progress file that have not finished."""
    return [f"          running (or interrupted): {job['threads_done']} {_unit(job)} done since"
            f" {_age(time.time() - job['started_at'])} ({job['old']} -> {job['new']}, shard {job['shard']})"
            for job in jobs if job["running"]]


def _check_lines(c: dict[str, Any] | None) -> list[str]:
    if c is None:
        return ["check:    none recorded"]
    verdict = "CLEAN" if c["clean"] else f"{c['divergences']} DIVERGENCE(S)"
    scope = "" if c.get("full", True) else " (partial: one shard or chosen threads)"
    return [f"check:    {verdict}{scope}; {c['threads_compared']} thread(s) compared;"
            f" finished {_age(c['age_seconds'])}"]


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
        lines.append(f"store check: {verdict}; {c['items_compared']} item(s) compared;"
                     f" finished {_age(c['age_seconds'])}")
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
