"""Phases of a migration and the allowed moves between them. Pure rules: no I/O, and no
import of ours but the error tree.

- `Phase`: the four phases, in order.
- `check_transition` / `guard_transition`: the rules for moving between them; the guard adds
  what the migration has recorded (`Evidence`: backfill, check, reverse backfill, the
  journal's unrepaired entries by store, the last move of reads back to old, the last time
  the fleet left shadow-write).

Where a process's phase comes from (argument, environment, settings, shared record) is
`control/sources.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from dualsaver.errors import InvalidPhaseError, TransitionError

__all__ = ["ORDER", "Evidence", "InvalidPhaseError", "Phase", "TransitionError", "check_transition", "guard_transition"]


class Phase(str, Enum):
    SHADOW_WRITE = "shadow-write"
    BACKFILL = "backfill"
    READ_SWITCH = "read-switch"
    DECOMMISSION = "decommission"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Phase) -> Phase:
        """The phase named by `value`; accepts `read_switch` and any case too."""
        if isinstance(value, Phase):
            return value
        wanted = str(value).strip().lower().replace("_", "-")
        for phase in cls:
            if phase.value == wanted:
                return phase
        valid = ", ".join(p.value for p in cls)
        raise InvalidPhaseError(f"unknown phase {value!r}; valid phases are: {valid}")

    @property
    def index(self) -> int:  # type: ignore[override]  # shadows str.index: a Phase's place in ORDER
        return list(Phase).index(self)

    @property
    def writes_old(self) -> bool:
        """Whether the old store still receives every write in this phase."""
        return self is not Phase.DECOMMISSION


ORDER: tuple[Phase, ...] = tuple(Phase)


def check_transition(
    current: Phase, target: Phase, *, reverse_backfill_done: bool = False
) -> None:
    """Raise TransitionError unless moving from `current` to `target` is allowed.

    Forward goes one step at a time. Backward is allowed from any phase in which the old
    store is still written; leaving decommission backward needs a reverse backfill first,
    because old stopped receiving writes there.
    """
    if target is current:
        return
    if target.index > current.index:
        if target.index != current.index + 1:
            nxt = ORDER[current.index + 1]
            raise TransitionError(
                f"cannot jump from {current} to {target}: forward moves go one step at a"
                f" time (next is {nxt})"
            )
        return
    if not current.writes_old and not reverse_backfill_done:
        raise TransitionError(
            f"cannot move back from {current} to {target}: the old store has not been"
            " written since decommission; run a reverse backfill (new -> old) first"
        )


@dataclass(frozen=True)
class Evidence:
    """What the migration has recorded, for the guards (times are Unix seconds).

    `backfill_*` is the last forward backfill (old -> new), `reverse_backfill_*` the last
    reverse one (new -> old), `check_*` the last check; `entered_at` is when the current
    phase was entered. A partial run (one shard, chosen threads) proves nothing for the
    whole store, so it counts as not done (`*_full=False`).
    """

    backfill_at: float | None = None
    backfill_ok: bool = False
    backfill_full: bool = True
    reverse_backfill_at: float | None = None
    reverse_backfill_ok: bool = False
    check_at: float | None = None
    check_clean: bool = False
    check_full: bool = True
    check_divergences: int = 0
    check_other_pair: bool = False  # every whole check compared other stores than the pair
    check_shards: str | None = None  # how far an incomplete sharded check got ("2 of 4 shards")
    # why replicas may still have written new's copies behind when the check started (the
    # record at shadow-write, live replicas still reporting it): see `left_shadow_write_at`
    check_writing_behind: str | None = None
    unrepaired_new: int = 0  # journal entries naming new that no repair settled
    unrepaired_old: int = 0  # ... naming old: writes it missed in read-switch, deletes made in decommission
    # when reads last moved back from new to old (a rollback): a check from before it says
    # nothing of what new took and lost while it was the primary
    reads_back_at: float | None = None
    # when the fleet's record last left shadow-write, where replicas write new's copies
    # behind: a copy queued before then and lost in a replica's crash is in no journal, so
    # only a check started after it proves that new holds what old does
    left_shadow_write_at: float | None = None
    entered_at: float | None = None
    # The long-term store's items, when a store pair is configured (or was backfilled):
    # read-switch needs their full backfill and a clean full check after it too.
    store_required: bool = False
    store_backfill_at: float | None = None
    store_backfill_ok: bool = False
    store_check_at: float | None = None
    store_check_clean: bool = False
    store_check_divergences: int = 0
    store_check_other_pair: bool = False  # every whole check of items compared other stores than the backfill's
    store_check_writing_behind: str | None = None  # as `check_writing_behind`, of the items' check


def utc_time(ts: float) -> str:
    """A time as the guards and reports print it."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def guard_transition(current: Phase, target: Phase, evidence: Evidence) -> None:
    """Raise TransitionError unless the rules and the recorded evidence allow the move.

    On top of `check_transition`: leaving decommission backward needs a successful reverse
    backfill finished after decommission was entered; any move back out of read-switch or
    decommission needs old to lack nothing the journal names; entering read-switch from
    backfill needs a successful full backfill, a clean full check finished after it and new
    to lack nothing the journal names; entering decommission, new to lack nothing either.
    """
    reverse_done = (
        evidence.reverse_backfill_at is not None
        and evidence.reverse_backfill_ok
        and (evidence.entered_at is None or evidence.reverse_backfill_at >= evidence.entered_at)
    )
    check_transition(current, target, reverse_backfill_done=reverse_done)
    if target.index < current.index and current.index >= Phase.READ_SWITCH.index:
        _require_old_settled(evidence, current, target)
    elif target is Phase.DECOMMISSION and current is Phase.READ_SWITCH:
        _require_new_settled_to_retire_old(evidence)
    elif target is Phase.READ_SWITCH and current is Phase.BACKFILL:
        backfill_at = _require_backfill(evidence)
        _require_check(evidence, backfill_at)
        _require_journal_settled(evidence)
        if evidence.store_required:
            _guard_store(evidence)


def _require_backfill(e: Evidence) -> float:
    """A forward backfill was recorded, every thread was copied, and it covered the whole
    store; returns when it finished."""
    if e.backfill_at is None:
        raise TransitionError(
            "cannot switch reads: no backfill has been recorded; run `dualsaver backfill`"
            " and then `dualsaver check`"
        )
    if not e.backfill_ok or not e.backfill_full:
        why = "some threads failed" if not e.backfill_ok else "it covered only part of the store"
        raise TransitionError(
            f"cannot switch reads: the last backfill ({utc_time(e.backfill_at)}) is not complete"
            f" ({why}); run it again until it finishes cleanly, then `dualsaver check`"
        )
    return e.backfill_at


def _require_check(e: Evidence, backfill_at: float) -> None:
    """A whole check of the migration's own pair started after the backfill ended (at
    `backfill_at`), and found nothing."""
    if e.check_other_pair:
        raise TransitionError(
            "cannot switch reads: (a) no whole check compared the migration's own pair of stores"
            " (the checks recorded compared other stores: a typo in --old or --new?); run"
            " `dualsaver check` on the configured old and new"
        )
    if not e.check_full:
        shards = f" ({e.check_shards} are in)" if e.check_shards else ""
        raise TransitionError(
            f"cannot switch reads: (b) the checks recorded cover only part of the store{shards};"
            " run a full `dualsaver check`, or the missing shards of the sharded one"
        )
    if e.check_at is None or e.check_at < backfill_at:
        raise TransitionError(
            f"cannot switch reads: (c) no check has started since the last backfill finished"
            f" ({utc_time(backfill_at)}); run `dualsaver check` and repair what it finds"
        )
    if e.reads_back_at is not None and e.check_at < e.reads_back_at:
        raise TransitionError(
            f"cannot switch reads: (c) no check has started since reads moved back to old"
            f" ({utc_time(e.reads_back_at)}): new was the primary until then, and what it lost since the last"
            " check is unknown; run `dualsaver check` and repair what it finds"
        )
    if e.left_shadow_write_at is not None and e.check_at < e.left_shadow_write_at:
        raise TransitionError(
            f"cannot switch reads: (c) no check has started since the fleet left shadow-write"
            f" ({utc_time(e.left_shadow_write_at)}): until then replicas wrote new's copies behind, and a"
            " replica that crashed since the last check lost what it had queued, with no journal entry;"
            " run `dualsaver check` (after `phase set backfill --wait`) and repair what it finds"
        )
    if e.check_writing_behind:
        raise TransitionError(_still_behind("(c)", "check", e.check_writing_behind))
    if not e.check_clean:
        raise TransitionError(
            f"cannot switch reads: the last check ({utc_time(e.check_at)}) found"
            f" {e.check_divergences} divergence(s); run `dualsaver repair`, then"
            " `dualsaver check` again"
        )


def _still_behind(rule: str, what: str, why: str) -> str:
    return (f"cannot switch reads: {rule} when the last {what} started, {why}: a copy such a replica"
            " queued after the check read its thread and lost in a crash is in no journal; run it again"
            " once every replica follows backfill (`dualsaver phase set backfill --wait 120`)")


def _require_journal_settled(e: Evidence) -> None:
    """No write new missed (a lossy live write held back among them) waits for repair."""
    if e.unrepaired_new:
        raise TransitionError(
            f"cannot switch reads: (d) {e.unrepaired_new} journal entr(ies) name writes new missed"
            " that no repair has settled; run `dualsaver repair --journal`, then check again"
        )


def _require_old_settled(e: Evidence, current: Phase, target: Phase) -> None:
    """Moving back from a phase that reads new makes old answer again (or answer read-switch's
    misses, whose threads it then copies back into new): nothing old missed since it stopped
    being the primary may wait for repair, or an acknowledged turn would vanish and a
    deleted conversation come back."""
    if e.unrepaired_old:
        raise TransitionError(
            f"cannot move back from {current} to {target}: {e.unrepaired_old} journal entr(ies) name"
            " writes old missed (or deletes made while it was not written) that no repair has settled;"
            f" run `dualsaver repair --journal --phase {current}` (it copies from new), then move back"
        )


def _require_new_settled_to_retire_old(e: Evidence) -> None:
    """Nothing new missed in read-switch (a lazy copy that failed, say) waits for repair:
    old, about to be retired, holds the only copy."""
    if e.unrepaired_new:
        raise TransitionError(
            f"cannot decommission: (d) {e.unrepaired_new} journal entr(ies) name writes new missed"
            " (a lazy copy that failed, say) that no repair has settled, and old, about to be retired, holds"
            " the only copy; run `dualsaver repair --journal --phase read-switch --source old` (new being the"
            " primary, it asks for --force: see its --help), then check again"
        )


def _guard_store(e: Evidence) -> None:
    """One application, one phase: the long-term store's items must be as ready as its
    checkpoints."""
    if e.store_backfill_at is None or not e.store_backfill_ok:
        raise TransitionError(
            "cannot switch reads: (e) the long-term store has no complete backfill recorded;"
            " run `dualsaver backfill --store-old ... --store-new ...` until it finishes cleanly"
        )
    if e.store_check_at is None and e.store_check_other_pair:
        raise TransitionError(
            "cannot switch reads: (e) no whole check of the long-term store compared the stores its backfill"
            " copied between (a typo in --store-old or --store-new?); run"
            " `dualsaver check --store-old ... --store-new ...` on them"
        )
    # a check after the backfill, any rollback, and write-behind (DualStore's, as DualSaver's)
    due = max(e.store_backfill_at, e.reads_back_at or 0.0, e.left_shadow_write_at or 0.0)
    if e.store_check_at is None or e.store_check_at < due:
        since = ("its backfill finished" if due == e.store_backfill_at
                 else "reads moved back to old" if due == e.reads_back_at else "the fleet left shadow-write")
        raise TransitionError(
            f"cannot switch reads: (e) no check of the long-term store has started since {since}"
            f" ({utc_time(due)}); run `dualsaver check --store-old ... --store-new ...`"
        )
    if e.store_check_writing_behind:
        raise TransitionError(_still_behind("(e)", "check of the long-term store", e.store_check_writing_behind))
    if not e.store_check_clean:
        raise TransitionError(
            f"cannot switch reads: (e) the last check of the long-term store ({utc_time(e.store_check_at)}) found"
            f" {e.store_check_divergences} divergence(s); run `dualsaver repair` with the store URLs, then check again"
        )
