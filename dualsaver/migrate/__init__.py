"""Moving history between stores: copying threads, the backfill job and its durable progress,
and repair.

- `backfill(old, new)` / `abackfill`: copy what new lacks, exactly, resumably, beside live
  traffic (`_backfill`: the job; `_pump`: its reader and writers; `progress`: what is done,
  on disk); `processes=N` runs it in N processes as one job (`_processes`);
- `copy_thread` / `copy_threads` (+ async): the same copy for a few threads, one batch after
  another (the lazy copy of read-switch and repair use it; `_copy` holds the plans);
- `repair(source, target, repairs=...)` / `arepair`: copy again what a check report or the
  journal names, replacing a thread whose target copy is wrong (`_repair`).
"""

from dualsaver.migrate._backfill import BackfillOptions, BackfillResult, Job, Progress, abackfill, backfill
from dualsaver.migrate._copy import acopy_thread, acopy_threads, copy_thread, copy_threads
from dualsaver.migrate._flow import (
    APPROXIMATE_NOTE, BATCH_CHECKPOINTS, BATCH_WRITES, CopyResult, passthrough, read_options,
)
from dualsaver.migrate.progress import BackfillState, job_key
from dualsaver.migrate._repair import (
    RepairOutcome,
    RepairResult,
    ThreadRepair,
    arepair,
    other,
    repair,
    repairs_for_threads,
    repairs_from_journal,
    repairs_from_report,
    entries_to_mark,
)

__all__ = [
    "APPROXIMATE_NOTE",
    "BATCH_CHECKPOINTS",
    "BATCH_WRITES",
    "BackfillOptions",
    "BackfillResult",
    "BackfillState",
    "CopyResult",
    "Job",
    "Progress",
    "RepairOutcome",
    "RepairResult",
    "ThreadRepair",
    "abackfill",
    "acopy_thread",
    "acopy_threads",
    "arepair",
    "backfill",
    "copy_thread",
    "copy_threads",
    "job_key",
    "other",
    "passthrough",
    "read_options",
    "repair",
    "repairs_for_threads",
    "repairs_from_journal",
    "repairs_from_report",
    "entries_to_mark",
]
