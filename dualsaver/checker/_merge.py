"""One report from the reports of a check's parts: the shards that a check in N processes
(`_processes`) checked side by side. Pure: what the parts found, summed and ordered as one
check orders it; the time fields are the caller's wall time of the whole, when given.

Over stores that do not change while it runs, the merge of the reports of the N parts of a
shard is the report of one check of that shard (time fields and `processes` aside;
tests/test_check_processes.py): the parts' threads are disjoint, so every count is a sum,
and a part re-checks its own suspects for as many rounds as one check would have run on
them (the whole's rounds are the most any part ran).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from dualsaver.checker._bookkeeping import count_kinds
from dualsaver.checker.findings import DivergenceReport, report_order

SUMMED = ("threads_compared", "checkpoints_compared", "checkpoints_old", "checkpoints_new", "writes_old", "writes_new")
TIME_FIELDS = ("duration_seconds", "started_at", "finished_at")


def merge_reports(
    parts: Sequence[DivergenceReport],
    *,
    shard: tuple[int, int] | None,
    processes: int,
    started_at: dt.datetime | None = None,
    duration: float | None = None,
) -> DivergenceReport:
    """The report of the check whose parts reported `parts` (each over a disjoint set of
    threads, with the same options): `shard` is what the whole covered (None: every thread),
    `processes` how many parts ran at once. `started_at` and `duration` are the whole's wall
    clock; without them, the span of the parts' own (they ran side by side)."""
    if not parts:
        raise ValueError("merge_reports needs the report of at least one part")
    summaries = [p.summary for p in parts]
    first = summaries[0]
    divergences = sorted((d for p in parts for d in p.divergences), key=report_order)
    summary = dict(first)  # what every part shares: stores, thread filter, workers, primary, values shown
    summary.update({name: sum(s[name] for s in summaries) for name in SUMMED})
    summary.update(
        divergences=len(divergences),
        counts=count_kinds(divergences),
        affected_threads=len({d.thread_id for d in divergences}),
        duration_seconds=round(duration if duration is not None else max(s["duration_seconds"] for s in summaries), 3),
        started_at=(started_at.isoformat(timespec="seconds") if started_at is not None
                    else min(s["started_at"] for s in summaries)),
        finished_at=max(s["finished_at"] for s in summaries),
        exact={side: all(s["exact"][side] for s in summaries) for side in ("old", "new")},
        shard=None if shard is None else f"{shard[0]}/{shard[1]}",
        processes=processes,
        recheck={
            "enabled": first["recheck"]["enabled"],
            "rounds": max(s["recheck"]["rounds"] for s in summaries),
            "suspect_threads": sum(s["recheck"]["suspect_threads"] for s in summaries),
            "cleared_threads": sum(s["recheck"]["cleared_threads"] for s in summaries),
        },
        compared={way: sum(s["compared"][way] for s in summaries) for way in ("by_bytes", "decoded")},
        throttled_seconds=round(sum(s["throttled_seconds"] for s in summaries), 3),
        warnings=list(dict.fromkeys(w for s in summaries for w in s["warnings"])),  # each once, in order
    )
    return DivergenceReport(clean=all(p.clean for p in parts) and not divergences, divergences=divergences,
                            summary=summary)
