"""The control store a fleet shares: where it lives and how to open it.

The control store lives in PostgreSQL (small `dualsaver_*` tables, `_record_postgres`) or
Redis (a few hashes and a list under one hash tag, `_record_redis`). It holds:

- the phase record: the phase, a version number, and who changed it, when, why, and
  whether it was forced; the history of every transition;
- heartbeats: which replica saw which phase when (so `phase set --wait` knows the fleet
  followed, and `phase set` refuses a step while replicas still lag one behind);
- the migration's evidence (last backfill, last check): see `evidence.py`;
- the shared journal, the backfill jobs' progress and the fleet's throttle.

A phase change is a compare-and-set on the version: two operators racing cannot both win.
Replicas follow the phase record through `sources.PollingPhaseSource`.

Older names, still accepted: `PhaseRecord`, `PostgresPhaseRecord`, `RedisPhaseRecord` and
`open_phase_record` are `ControlStore`, `PostgresControlStore`, `RedisControlStore` and
`open_control_store`.
"""

from __future__ import annotations

from dualsaver.control._record_base import DEFAULT_TIMEOUT, ControlStore, PhaseState, ReplicaSeen, Transition, who
from dualsaver.control._record_postgres import PostgresControlStore
from dualsaver.control._record_redis import RedisControlStore
from dualsaver.errors import ConcurrentChange, RecordUnavailable, StoreURLError
from dualsaver.redact import redact
from dualsaver.stores.urls import parse_store_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "ConcurrentChange",
    "ControlStore",
    "PhaseRecord",
    "PhaseState",
    "PostgresControlStore",
    "PostgresPhaseRecord",
    "RecordUnavailable",
    "RedisControlStore",
    "RedisPhaseRecord",
    "ReplicaSeen",
    "Transition",
    "open_control_store",
    "open_phase_record",
    "who",
]


def open_control_store(url: str, *, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> ControlStore:
    """The control store at `url` (postgresql://... or redis://, rediss://, redis+cluster://...),
    for the migration `name`.

    Opening connects to nothing: the first read does, so a replica can start (with a
    fallback) while the store is down.
    """
    try:
        kind = parse_store_url(url).kind
    except StoreURLError as exc:
        raise RecordUnavailable(str(exc)) from None
    if kind == "postgres":
        return PostgresControlStore(url, name, timeout)
    if kind == "redis":
        return RedisControlStore(url, name, timeout)
    raise RecordUnavailable(
        f"control store {redact(url)}: a control store lives in PostgreSQL or Redis"
        " (postgresql://..., redis://..., redis+cluster://...)"
    )


# The older names (deprecated): the same classes and function.
PhaseRecord = ControlStore
PostgresPhaseRecord = PostgresControlStore
RedisPhaseRecord = RedisControlStore
open_phase_record = open_control_store
