"""DualSaver: a checkpointer that wraps the old and the new one and routes by phase.

`graph.compile(checkpointer=DualSaver(old, new))` is the only code change a migration
needs. Every method reads the phase once, builds a plan (`_plans`) from that phase's route
and hands it to the sync or the async shell (`_shells`): each sync method and its async
twin differ only in `await`.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from dualsaver.control import settings
from dualsaver.control.journal import Journal
from dualsaver.control.phase import Phase
from dualsaver.preflight import target_kind
from dualsaver.preflight.live import write_refusal
from dualsaver.saver import _plans as plans
from dualsaver.saver._capabilities import class_with_capabilities
from dualsaver.saver._composite import CompositeSaver
from dualsaver.saver._pair import SAVER_METHODS, PhasedPair, expect_stores
from dualsaver.saver._shells import AsyncShell, Operation, SyncShell
from dualsaver.saver._versions import next_version
from dualsaver.saver.routing import Role, route_for


class DualSaver(PhasedPair, CompositeSaver):
    """Writes to old and new, reads from the phase's read store.

    In backfill and read-switch, a thread one store missed a write of (journaled here or,
    with a control store, on any replica: in the rolling move between the two phases,
    replicas of both write at once) is read from the other, which took that write and takes
    every write of both phases, until a repair settles the entry (`plans.steered`,
    `Recorder.stale_threads`; another replica's entry counts here about `_stale.READ_EVERY`
    seconds after it shipped, and a repair's settling about as long after it is done).

    Args:
        old: the checkpointer being left.
        new: the checkpointer being moved to.
        phase: a `Phase`, its name, or a phase source; when None: `$DUALSAVER_PHASE`, else
            the settings file, else the fleet's shared phase record, else `shadow-write`.
        strict: raise `SecondaryWriteError` when the secondary fails (after journaling).
        secondary_timeout: seconds a secondary call may take before it counts as failed;
            `None` waits forever. A bounded call the caller waits for (`write_behind=False`,
            and every phase from backfill on) runs on a thread of a small pool while the
            caller waits: a thread hop, about 0.1 ms a write on a 2-core VM
            (benchmarks/bench_overhead.py); with `None` it runs on the caller's thread.
        journal: a `Journal`, a path for one, or None for `$DUALSAVER_JOURNAL` /
            `.dualsaver/journal.sqlite`.
        canary_percent: in read-switch, only this share of threads (by a stable hash of the
            thread id) reads from new; the rest still read from old, but for threads old
            missed a write of (here, or on another replica: `Recorder.stale_threads`).
            None: all threads.
        shadow_read_rate: in shadow-write and backfill, the share of `get_tuple` calls also
            answered by new and compared with old's answer; mismatches are counted and
            journaled, and the caller always gets old's answer.
        write_behind: on by default. In shadow-write, where nobody reads new yet, new's
            copy of each put and put_writes is written in the background (in call order,
            through a bounded queue, in the application's pauses) instead of making the
            caller wait for both stores. New then lags old by the queue, so run the check
            from the backfill phase on (every write is synchronous there). Closing, a normal
            exit (`close()`, or `aclose()` / `async with` for async calls) or the event
            loop closing journals what did not land; a crash loses the queued copies
            without a journal entry (the check that read-switch requires, started after the
            fleet left shadow-write, finds them). Deletes, copies and prunes are always
            synchronous, and so is everything in strict mode. `flush()` / `aflush()` wait for the queue;
            `False` makes every shadow-write call wait for both stores.
        control: the fleet's control store (`postgresql://...` or `redis://...`); None:
            `$DUALSAVER_CONTROL_URL`, else the settings file. With one, the journal goes
            there (through a local spool: a call that journals waits for its entry to be
            shipped, at most 0.5 s, not while the control store is down), and repair reads
            the whole fleet's entries; without one, it stays in the local file.
        circuit_cool_down: after a secondary fails or times out, its calls are not sent for
            this many seconds (each is journaled at once as missed); then one call at a time
            probes it, and a probe that succeeds sends them again. A turn of several calls
            thus waits at most one `secondary_timeout` while the secondary is down. None:
            every call waits for the secondary.

    `phase` may also be a phase source: any object with `current() -> Phase` and an
    `origin` string, asked at the start of every operation (a fleet's shared record).

    Extended capabilities (`delete_for_runs`, `copy_thread`, `prune`) are present whenever
    both wrapped savers can do them, themselves or through their native store (SQLite,
    PostgreSQL, memory, both Redis layouts): see `_capabilities`.

    In decommission old receives nothing; each `delete_thread` and `prune` of that phase
    is journaled as a tombstone for old, so a rollback (reverse backfill, then repair from
    the journal) does not bring deleted threads back.
    """

    def __new__(cls, old: Any = None, new: Any = None, *args: Any, **kwargs: Any) -> DualSaver:
        # copy.copy() calls __new__ with no arguments: keep the class it already has.
        if old is None or new is None:
            return super().__new__(cls)
        return super().__new__(class_with_capabilities(cls, old, new))

    def __init__(
        self,
        old: BaseCheckpointSaver,
        new: BaseCheckpointSaver,
        phase: Phase | str | None = None,
        *,
        strict: bool = False,
        secondary_timeout: float | None = 5.0,
        journal: Journal | str | os.PathLike[str] | None = None,
        canary_percent: float | None = None,
        shadow_read_rate: float = 0.0,
        write_behind: bool = True,
        circuit_cool_down: float | None = 5.0,
        control: str | None = None,
    ) -> None:
        expect_stores(BaseCheckpointSaver, "open_saver", SAVER_METHODS, old=old, new=new)
        super().__init__(serde=old.serde)
        if canary_percent is not None and not 0 <= canary_percent <= 100:
            raise ValueError(f"canary_percent must be between 0 and 100, got {canary_percent}")
        if not 0 <= shadow_read_rate <= 1:
            raise ValueError(f"shadow_read_rate must be between 0 and 1, got {shadow_read_rate}")
        self.canary_percent = canary_percent
        self.shadow_read_rate = shadow_read_rate
        self._kinds = {"old": target_kind(old), "new": target_kind(new)}  # what each can hold (preflight.live)
        self._pair(old, new, phase, strict=strict, secondary_timeout=secondary_timeout, journal=journal,
                   write_behind=write_behind, circuit_cool_down=circuit_cool_down, control=control)

    def _shells(self) -> None:
        stores = {"old": self.old, "new": self.new}
        self._sync = SyncShell(stores, self.recorder, self.secondary_timeout, self.breakers)
        self._async = AsyncShell(stores, self.recorder, self.secondary_timeout, self.breakers)

    @classmethod
    def from_settings(
        cls, old: BaseCheckpointSaver, new: BaseCheckpointSaver, path: Any = None, **overrides: Any
    ) -> DualSaver:
        """A DualSaver configured by the settings file (`path`, else `$DUALSAVER_SETTINGS`):
        strict, secondary timeout, journal, canary and shadow-read rate; keyword arguments win."""
        return cls._from_settings(old, new, path, settings.current(path).saver_kwargs(), overrides)

    # --- phase, stores and what went wrong ----------------------------------------------

    def _judge(self, role: Role, operation: str, args: tuple) -> BaseException | None:
        return write_refusal(self._kinds[role], operation, args)

    @property
    def shadow_mismatches(self) -> Counter[str]:
        return self.recorder.shadow_mismatches

    def _begin(self, name: str, config: Any = None, thread_id: Any = None) -> tuple[plans.Context, Operation]:
        """The context a plan runs in: the phase is read once, at the start of the call."""
        phase = self.phase
        shadow = self.shadow_read_rate > 0 and random.random() < self.shadow_read_rate
        steers = phase in plans.STEERED_PHASES
        ctx = self._context(phase, canary_percent=self.canary_percent, shadow_read=shadow, judge=self._judge,
                            stale_in_old=self.recorder.stale_threads("old") if steers else (),
                            stale_in_new=self.recorder.stale_threads("new") if steers else ())
        if thread_id is None:
            thread_id = plans.thread_of(config)
        return ctx, Operation(name, phase.value, None if thread_id is None else str(thread_id))

    # --- versions, allowlist, lifecycle -------------------------------------------------

    def get_next_version(self, current: Any, channel: None = None) -> Any:
        route = route_for(self.phase)
        primary = self.store(route.primary)
        other = self.old if primary is self.new else self.new
        return next_version(current, primary, other)

    def __repr__(self) -> str:
        return f"DualSaver(old={type(self.old).__name__}, new={type(self.new).__name__}, phase={self.phase.value!r})"
