"""Repair: copy what a check report (or the journal) names again, from the source of truth.

The source is the phase's primary (old until reads switch, then new); the target is the
other store. Per thread, the plan is one of:

- **copy**: insert into the target what it lacks (`copy_thread`: insert-if-absent, never
  overwrites). Enough for checkpoints or writes missing in the target, and safe beside
  live traffic.
- **replace**: delete the thread on the target, then copy it again. Needed when the target
  holds a *wrong* row (a checkpoint, metadata or writes mismatch, a row only the target
  has, a row unreadable in the target, or a delete the target missed): insert-if-absent
  would leave it as it is, and the backends offer no per-checkpoint delete. The delete
  comes before the source is read, so a live shadow write (primary first, then secondary)
  is either re-copied from the primary or lands on the target after the delete. This
  rewrites the target's copy of the whole thread; it is what an operator asked for by
  running repair, and it is never done to the primary without `force`.
- **copy only, flagged**: a row unreadable in the *source* cannot be copied; the target's
  copy may be the only good one, so the thread is never deleted there and the result says
  the row needs a person.

What to do per thread is decided by pure functions (`repairs_from_report`,
`repairs_from_journal`); doing it is one plan (`_repair_plan`), which `repair` and `arepair` run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dualsaver import sansio
from dualsaver.checker.findings import (
    CHECKPOINT_MISMATCH,
    METADATA_MISMATCH,
    MISSING_IN_NEW,
    MISSING_IN_OLD,
    UNREADABLE,
    WRITES_MISMATCH,
    DivergenceReport,
)
from dualsaver.control.journal import JournalEntry, is_item_entry
from dualsaver.control.throttle import Throttle
from dualsaver.errors import describe_error
from dualsaver.migrate._copy import copy_then_ask
from dualsaver.migrate._flow import APPROXIMATE_NOTE, CopyResult
from dualsaver.sansio import AsyncTargets, Call, Plan, Targets
from dualsaver.stores import anative_for, native_for, refuse_same_store

Side = Literal["old", "new"]
Action = Literal["copy", "replace"]
# Journaled operations that only a fresh copy can undo (the target kept what it should not).
_REPLACING_OPERATIONS = frozenset({"delete_thread", "delete_for_runs", "prune", "copy_thread"})


@dataclass(frozen=True, slots=True)
class ThreadRepair:
    """What repair will do to one thread on the target, and why."""

    thread_id: str
    action: Action
    reasons: tuple[str, ...] = ()
    attention: tuple[str, ...] = ()  # what repair cannot fix: a person must look


@dataclass
class RepairOutcome:
    thread_id: str
    action: Action
    deleted: bool = False
    copy: CopyResult | None = None
    error: str | None = None
    attention: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and (self.copy is None or self.copy.ok)


@dataclass
class RepairResult:
    source: Side
    target: Side
    dry_run: bool
    outcomes: list[RepairOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    exact: bool = True  # False when either side used the public-API adapter
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def repaired_threads(self) -> list[str]:
        return [o.thread_id for o in self.outcomes if o.ok]

    def summary(self) -> str:
        replaced = sum(o.action == "replace" for o in self.outcomes)
        copied = len(self.outcomes) - replaced
        # In a dry run a replaced thread is copied whole: count what would be read.
        added = sum(
            (o.copy.read if self.dry_run and o.action == "replace" else o.copy.checkpoints)
            for o in self.outcomes
            if o.copy
        )
        writes = sum(o.copy.writes for o in self.outcomes if o.copy)
        failed = [o for o in self.outcomes if not o.ok]
        copy_verb, replace_verb = (
            ("to copy", "to replace") if self.dry_run else ("copied", "replaced")
        )
        lines = [
            f"{'dry run: ' if self.dry_run else ''}repair {self.source} -> {self.target}:"
            f" {len(self.outcomes)} thread(s): {copied} {copy_verb} (insert-if-absent),"
            f" {replaced} {replace_verb} (deleted on {self.target}, copied again);"
            f" {added} checkpoint(s) and {writes} write(s)"
            f" {'to add' if self.dry_run else 'added'}; {len(failed)} failed;"
            f" {self.elapsed_s:.2f}s"
        ]
        lines += self.notes
        for o in failed[:20]:
            why = o.error or (o.copy and (o.copy.error or f"{o.copy.unreadable} unreadable row(s)"))
            lines.append(f"  failed: {o.thread_id}: {why}")
        for o in self.outcomes:
            for note in o.attention:
                lines.append(f"  needs attention: {o.thread_id}: {note}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- what to repair


def other(side: Side) -> Side:
    return "new" if side == "old" else "old"


# Rows only old holds, from read-switch on: not trimmed to what new holds.
_OLD_ONLY = ("old holds rows new lacks; from read-switch on they are not deleted from old: read-switch answers"
             " a thread new lacks from old, and new may have lost them. `dualsaver backfill --thread {thread}`"
             " copies them into new (insert-if-absent); if new deleted them, `dualsaver repair --journal`"
             " applies the delete")


def repairs_from_report(report: DivergenceReport, source: Side = "old") -> list[ThreadRepair]:
    """One `ThreadRepair` per affected thread of a check report.

    Rows only the target holds are deleted with it (the thread replaced) when the source is
    old: until read-switch nothing reaches new that old refused, so they are deletes new
    missed. From read-switch on (source new) rows only old holds are not: the thread is
    named for attention (`_OLD_ONLY`), for read-switch answers a thread new lacks from old,
    and new may have lost them."""
    target = other(source)
    reasons: dict[str, list[str]] = {}
    replace: set[str] = set()
    attention: dict[str, list[str]] = {}
    for d in report.part(items=False).divergences:  # the store's items: dualsaver.items
        where = f"{d.kind} at {d.checkpoint_ns or '(root)'}/{d.checkpoint_id or '*'}"
        reasons.setdefault(d.thread_id, []).append(where)
        if d.kind == f"missing_in_{target}":
            continue  # the target lacks rows: insert-if-absent fills them
        if d.kind == MISSING_IN_NEW and source == "new":
            notes, note = attention.setdefault(d.thread_id, []), _OLD_ONLY.format(thread=d.thread_id)
            if note not in notes:  # once a thread, however many rows
                notes.append(note)
            continue
        if d.kind == UNREADABLE:
            side = d.detail.get("side")
            if side in (source, "both"):
                attention.setdefault(d.thread_id, []).append(
                    f"{where} is unreadable in the {source} store (the source): it cannot be"
                    " copied; the thread is not deleted on the target"
                )
                continue
            replace.add(d.thread_id)
        elif d.kind in (MISSING_IN_NEW, MISSING_IN_OLD, CHECKPOINT_MISMATCH, METADATA_MISMATCH, WRITES_MISMATCH):
            # rows only the target holds
            replace.add(d.thread_id)
        else:
            replace.add(d.thread_id)  # an unknown kind: be thorough
    repairs = []
    for thread_id in sorted(reasons):
        flagged = tuple(attention.get(thread_id, ()))
        action: Action = "replace" if thread_id in replace and not flagged else "copy"
        repairs.append(ThreadRepair(thread_id, action, tuple(reasons[thread_id]), flagged))
    return repairs


def repairs_from_journal(entries: Iterable[JournalEntry], source: Side = "old") -> list[ThreadRepair]:
    """One `ThreadRepair` per thread with pending journal entries against the target (entries
    about store items are not threads': they are skipped here)."""
    target = other(source)
    reasons: dict[str, list[str]] = {}
    replace: set[str] = set()
    for e in entries:
        if e.thread_id is None or e.store != target or is_item_entry(e):
            continue  # store items have their own repair (dualsaver.items)
        reasons.setdefault(e.thread_id, []).append(f"{e.store} missed {e.operation}")
        if e.operation in _REPLACING_OPERATIONS:
            replace.add(e.thread_id)
    return [
        ThreadRepair(t, "replace" if t in replace else "copy", tuple(reasons[t]))
        for t in sorted(reasons)
    ]


def repairs_for_threads(thread_ids: Iterable[str], replace: bool = False) -> list[ThreadRepair]:
    action: Action = "replace" if replace else "copy"
    return [ThreadRepair(t, action, ("named by the operator",)) for t in sorted(set(thread_ids))]


# --------------------------------------------------------------------------- execution


def _repair_plan(
    repairs: Sequence[ThreadRepair], result: RepairResult, source: Any, target: Any, dry_run: bool,
    throttle: Throttle | None = None,
) -> Plan[None]:
    """Per thread: delete it on the target first when it is to be replaced, then copy it
    insert-if-absent. One thread's failure is recorded and the rest go on."""
    for repair_ in repairs:
        outcome = RepairOutcome(repair_.thread_id, repair_.action, attention=repair_.attention)
        try:
            if repair_.action == "replace" and not dry_run:
                yield Call("target", "delete_thread", (repair_.thread_id,))
                outcome.deleted = True
            outcome.copy = yield from copy_then_ask(source, target, [repair_.thread_id], dry_run, True, throttle)
            if outcome.copy.deleted:
                outcome.deleted = True
                result.notes.append(f"{repair_.thread_id}: deleted in the source while it was copied:"
                                    " deleted in the target too")
        except Exception as exc:  # one thread's failure must not stop the rest
            outcome.error = describe_error(exc)
        result.outcomes.append(outcome)


def _new_result(source_side: Side, dry_run: bool, source: Any, target: Any) -> RepairResult:
    refuse_same_store(source, target, "a repair")  # it would delete the threads it is to copy
    result = RepairResult(source_side, other(source_side), dry_run, exact=bool(source.exact and target.exact))
    result.notes += [APPROXIMATE_NOTE.format(side=f"the {side}")
                     for side, store in (("source", source), ("target", target))
                     if not store.exact]
    return result


def _worklist(
    thread_ids: Sequence[str] | None, repairs: Sequence[ThreadRepair] | None, replace: bool
) -> list[ThreadRepair]:
    if repairs is not None:
        return list(repairs)
    return repairs_for_threads(thread_ids or (), replace)


def repair(
    source: Any, target: Any, thread_ids: Sequence[str] | None = None, *, repairs: Sequence[ThreadRepair] | None = None,
    replace: bool = False, dry_run: bool = False, source_side: Side = "old", throttle: Throttle | None = None,
) -> RepairResult:
    """Copy threads again from `source` to `target` (savers or native stores).

    With `thread_ids`, each thread is copied insert-if-absent (`replace=True`: deleted on the
    target first). With `repairs` (from `repairs_from_report` / `repairs_from_journal`), each
    thread gets its planned action. Errors are recorded per thread, not raised.
    """
    source_store, target_store = native_for(source), native_for(target)
    result = _new_result(source_side, dry_run, source_store, target_store)
    started = time.perf_counter()
    plan = _repair_plan(_worklist(thread_ids, repairs, replace), result, source_store, target_store, dry_run, throttle)
    sansio.run(plan, Targets(source=source_store, target=target_store))
    result.elapsed_s = time.perf_counter() - started
    return result


async def arepair(
    source: Any, target: Any, thread_ids: Sequence[str] | None = None, *, repairs: Sequence[ThreadRepair] | None = None,
    replace: bool = False, dry_run: bool = False, source_side: Side = "old", throttle: Throttle | None = None,
) -> RepairResult:
    """The async form of `repair` (async savers), the same plan."""
    source_store, target_store = anative_for(source), anative_for(target)
    result = _new_result(source_side, dry_run, source_store, target_store)
    started = time.perf_counter()
    plan = _repair_plan(_worklist(thread_ids, repairs, replace), result, source_store, target_store, dry_run, throttle)
    await sansio.arun(plan, AsyncTargets(source=source_store, target=target_store))
    result.elapsed_s = time.perf_counter() - started
    return result


def entries_to_mark(entries: Iterable[JournalEntry], repaired: Iterable[str], target: Side) -> list[int]:
    """The journal entries a repair settled: those naming the target, of threads it repaired.
    (Entries journaled after the repair read the journal are not among them.)"""
    done = set(repaired)
    return [e.id for e in entries if e.id is not None and e.store == target and e.thread_id in done]
