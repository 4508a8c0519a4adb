"""The shared phase record a fleet follows: where it lives and how to open it.

The record lives in PostgreSQL (small `dualsaver_*` tables, `_record_postgres`) or Redis (a
few hashes and a list under one hash tag, `_record_redis`). It holds:

- the phase, a version number, and who changed it, when, why, and whether it was forced;
- the history of every transition;
- heartbeats: which replica saw which phase when (so `phase set --wait` knows the fleet
  followed, and `phase set` refuses a step while replicas still lag one behind);
- the migration's evidence (last backfill, last check): see `evidence.py`.

A phase change is a compare-and-set on the version: two operators racing cannot both win.
Replicas follow the record through `sources.PollingPhaseSource`.
"""

from __future__ import annotations

from dualsaver.control._record_base import DEFAULT_TIMEOUT, PhaseRecord, PhaseState, ReplicaSeen, Transition, who
from dualsaver.control._record_postgres import PostgresPhaseRecord
from dualsaver.control._record_redis import RedisPhaseRecord
from dualsaver.errors import ConcurrentChange, RecordUnavailable, StoreURLError
from dualsaver.redact import redact
from dualsaver.stores.urls import parse_store_url

__all__ = [
    "ConcurrentChange",
    "DEFAULT_TIMEOUT",
    "PhaseRecord",
    "PhaseState",
    "PostgresPhaseRecord",
    "RecordUnavailable",
    "RedisPhaseRecord",
    "ReplicaSeen",
    "Transition",
    "open_phase_record",
    "who",
]


def open_phase_record(url: str, *, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> PhaseRecord:
    """The record at `url` (postgresql://... or redis://, rediss://, redis+cluster://...).

    Opening connects to nothing: the first read does, so a replica can start (with a
    fallback) while the record is down.
    """
    try:
        kind = parse_store_url(url).kind
    except StoreURLError as exc:
        raise RecordUnavailable(str(exc)) from None
    if kind == "postgres":
        return PostgresPhaseRecord(url, name, timeout)
    if kind == "redis":
        return RedisPhaseRecord(url, name, timeout)
    raise RecordUnavailable(
        f"phase record {redact(url)}: a phase record lives in PostgreSQL or Redis"
        " (postgresql://..., redis://..., redis+cluster://...)"
    )
