"""Every composite-saver operation written once, as a plan (see `dualsaver.sansio`).

A plan decides (which store, in what order, what a failure means) from the route of the
phase the call started in, and yields `Call`s on named targets:

- ``"old"`` / ``"new"``: the wrapped savers (``bounded=True`` on a secondary's call: the
  shell limits how long it may take);
- ``"behind"``: write-behind (`submit` a secondary write to run in the background, in
  order; `drain` until every queued write landed);
- ``"recorder"``: count, log and journal (`missed`, `tombstone`, `mismatch`), or ask the
  journal (`missed_delete`);
- ``"copier"``: copy one whole thread from one store to the other (the lazy copy).

The sync shell calls ``saver.put(...)``; the async shell awaits ``saver.aput(...)``: the
decisions are never written twice. This is the shape of httpx's auth flows.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from dualsaver.control.phase import Phase
from dualsaver.errors import LossyValue, SecondaryWriteError, describe_error
from dualsaver.items.record import ItemKey
from dualsaver.sansio import Call, Plan, relay
from dualsaver.saver._breaker import Breaker
from dualsaver.saver._recorder import Mismatch, Missed, Tombstone
from dualsaver.saver._shadow import differing_fields, in_canary
from dualsaver.saver.routing import Mode, Role, Route, other


# Not frozen, though nothing changes one once made: every composite call makes one, and a
# frozen dataclass's __init__ sets each field through object.__setattr__ (2.5 us against 0.6).
@dataclass(slots=True)
class Context:
    """What a plan knows: the route of the phase the call started in, and its options."""

    route: Route
    strict: bool = False
    canary_percent: float | None = None  # read-switch: share of threads (by hash) reading new
    shadow_read: bool = False  # this call is sampled for a shadow read of new
    write_behind: bool = False  # the secondary is written in the background (see _writebehind)
    breakers: Mapping[Role, Breaker] = field(default_factory=lambda: {"old": Breaker(None), "new": Breaker(None)})
    # why a store cannot hold a write faithfully (a LossyValue naming the rule), or None
    judge: Callable[[Role, str, tuple], BaseException | None] | None = None
    # tiered: the hot store bounds its own reads (`get_tuple_within`), so none needs a thread
    hot_bounds_reads: bool = False
    # a DualStore whose stores both renew TTLs on reads: what a read renews, the secondary renews too
    renews_secondary: bool = False
    # backfill and read-switch: the threads and items each store missed a write of (`Recorder.stale_threads`)
    stale_in_old: Collection[str] = ()
    stale_in_new: Collection[str] = ()
    stale_items_in_old: Collection[ItemKey] = ()
    stale_items_in_new: Collection[ItemKey] = ()

    def reads(self, thread_id: str | None) -> tuple[Role, Role | None]:
        """The store a read of this thread goes to, and where a miss falls back."""
        route = self.route
        if thread_id is not None and (other := steered(route.phase, thread_id, self.stale_in_old, self.stale_in_new)):
            return other, None
        if self.canary_percent is not None and route.phase is Phase.READ_SWITCH:
            if thread_id is None or not (in_canary(thread_id, self.canary_percent) or thread_id in self.stale_in_old):
                # old holds every write of read-switch but those it missed: a thread it missed
                # one of is read from new, which took them all first
                return "old", None
        return route.read, route.fallback


# Phases that write both stores with the caller waiting for each (nothing queued behind),
# after the backfill: the stores hold each thread whole, but for what one of them missed.
STEERED_PHASES = frozenset({Phase.BACKFILL, Phase.READ_SWITCH})


def steered(phase: Phase | Mode, key: Any, stale_in_old: Collection[Any], stale_in_new: Collection[Any]) -> Role | None:
    """The store a read of `key` (a thread, an item) goes to because the other missed a
    write of it (journaled, here or on another replica) and this one did not; None: as the
    phase routes it. It matters in the rolling moves between backfill and read-switch,
    when replicas of both phases write at once: a write one store missed on a replica of
    one phase is read on a replica of the other from the store that lacks it."""
    if phase not in STEERED_PHASES:
        return None
    return steered_by(key in stale_in_old, key in stale_in_new)


def steered_by(in_old: bool, in_new: bool) -> Role | None:
    """The store a read goes to when old (`in_old`) or new missed a write it reads; None: both
    or neither did, so neither is better than the phase's own choice."""
    if in_old == in_new:
        return None
    return "new" if in_old else "old"


# What one lost write leaves in the journal: (operation, where). A saver's write names one
# thread; a store's batch names each item it puts or deletes.
Mark = tuple[str, Mapping[str, Any]]
# Deletes the retired store does not receive in decommission: journaled as tombstones.
_TOMBSTONED = frozenset({"delete_thread", "prune", "store.delete"})


def missed(target: str, marks: tuple[Mark, ...], error: BaseException, phase: Phase | Mode) -> tuple[Missed, ...]:
    """The journal entries of a write that `target` did not take: of every mark, or only of
    those a partial copy names as not copied (`CopyFailed.not_copied`: the rest landed)."""
    # `target` is a `Call`'s, typed str by sansio; a secondary write's is always a Role
    return tuple(Missed(target, operation, at, error, phase) for operation, at in _not_taken(marks, error))  # type: ignore[arg-type]


def _not_taken(marks: tuple[Mark, ...], error: BaseException) -> tuple[Mark, ...]:
    named = getattr(error, "not_copied", None)
    if not named:
        return marks
    where = {tuple(sorted(at.items())) for at in named}
    kept = tuple(mark for mark in marks if tuple(sorted(mark[1].items())) in where)
    return kept or marks  # names none of the marks: journal them all rather than none


_fallback_serde = JsonPlusSerializer()


def snapshot(value: Any) -> Any:
    """A private copy, so both stores get what the caller passed at call time.

    LangGraph mutates state objects between super-steps (an accumulating Topic channel
    extends its list in place), and the secondary may be written after the caller moved
    on. A pickle round trip copies LangGraph state about twice as fast as deepcopy (its
    walk is in C); what pickle refuses goes through deepcopy, then through a serializer.
    The bytes never leave this process.
    """
    with contextlib.suppress(Exception):  # unpicklable: try the slower ways below
        return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    try:
        return copy.deepcopy(value)
    except Exception:
        return _fallback_serde.loads_typed(_fallback_serde.dumps_typed(value))


@dataclass(frozen=True, slots=True)
class Frozen:
    """Values as they were at call time, for a write that runs later (write-behind): their
    pickle bytes, thawed into a private copy only when the write runs.

    Bytes, not copied objects, wait in the queue: a backlog of live copies (thousands of
    objects for LangGraph state) is more memory and more for every garbage collection in
    the process to walk. Over no-op stores, a write-behind call with the demo agent's state
    took about 100 us of the caller's CPU with copies queued, 59 us with bytes; in the
    benchmark's real graph the process's CPU a turn did not measurably change (the worker
    now unpickles its own copy: bench_shadow_write, CPU per turn)."""

    data: bytes | None
    size: int  # how many values
    values: tuple = ()  # what pickle refused: copied the slow way, handed over as they are

    def thaw(self) -> tuple:
        return self.values if self.data is None else pickle.loads(self.data)


def copies(values: tuple) -> tuple[tuple, Frozen]:
    """A private copy of `values` for the call now, and a frozen one for a write that runs
    later: both what the caller passed at call time (see `snapshot`)."""
    with contextlib.suppress(Exception):  # unpicklable: both copies the slow way below
        data = pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)
        return pickle.loads(data), Frozen(data, len(values))
    return snapshot(values), Frozen(None, len(values), snapshot(values))


def copies_for(ctx: Context, values: tuple) -> tuple[tuple, Frozen | None]:
    """`copies` where the phase writes two stores. Where it writes one (decommission) there
    is nothing to keep alike: the store gets the caller's values, as it would on its own."""
    if ctx.route.secondary is None:
        return values, None
    return copies(values)


@dataclass(frozen=True, slots=True)
class Behind:
    """A secondary write to run in the background, after every earlier one of this saver,
    without the caller waiting; if it fails, it is recorded as `missed()` says."""

    call: Call  # without its trailing arguments when `later` holds them
    operation: str
    marks: tuple[Mark, ...]
    phase: Phase | Mode
    later: Frozen | None = None  # the call's last arguments, frozen at call time

    def missed(self, error: BaseException) -> tuple[Missed, ...]:
        return missed(self.call.target, self.marks, error, self.phase)

    def thawed(self) -> Call:
        """The call to make now, with private copies of the arguments frozen at call time."""
        if self.later is None:
            return self.call
        call = self.call
        return Call(call.target, call.method, call.args + self.later.thaw(), call.kwargs, call.stream, call.bounded)


def _config_copy(config: Any) -> Any:
    """Configs carry callbacks and other live objects: copy only what stores read."""
    if not config:
        return config
    return {**config, "configurable": dict(config.get("configurable", {}))}


def where(config: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
    conf = (config or {}).get("configurable", {})
    found = {
        "thread_id": conf.get("thread_id"),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"),
    }
    found.update(extra)
    return found


def thread_of(config: Mapping[str, Any] | None) -> str | None:
    tid = (config or {}).get("configurable", {}).get("thread_id")
    return None if tid is None else str(tid)


# --------------------------------------------------------------------------- writes


def _write_secondary(ctx: Context, operation: str, call: Call, marks: tuple[Mark, ...]) -> Plan[None]:
    try:
        yield from guarded(ctx.breakers, call)
    except Exception as exc:
        yield from _missed(ctx, operation, call, marks, exc)


def _missed(ctx: Context, operation: str, call: Call, marks: tuple[Mark, ...], exc: BaseException) -> Plan[None]:
    """Journal a secondary write that did not land (strict: raise after)."""
    yield Call("recorder", "missed", missed(call.target, marks, exc, ctx.route.phase))
    if ctx.strict:
        raise SecondaryWriteError(
            f"{operation} reached the primary ({ctx.route.primary}) but the secondary"
            f" ({call.target}) failed: {describe_error(exc)}"
        ) from exc


def guarded(breakers: Mapping[Role, Breaker], call: Call) -> Plan[Any]:
    """A secondary call through its store's circuit breaker: refused at once while the
    circuit is open (`CircuitOpen`), else sent, its outcome telling the breaker."""
    breaker = breakers[call.target]  # type: ignore[index]  # sansio types a target as str: here a Role
    if not breaker.allow():
        raise breaker.refusal()
    try:
        result = yield call
    except Exception as exc:
        if isinstance(exc, LossyValue) or getattr(exc, "refused", False):
            breaker.succeeded()  # it answered, refusing a value it cannot hold: no sign of an outage
        else:
            breaker.failed()
        raise
    breaker.succeeded()
    return result


def write_behind(job: Behind, breakers: Mapping[Role, Breaker]) -> Plan[None]:
    """A queued secondary write, run in the background: a failure is journaled."""
    try:
        yield from guarded(breakers, job.thawed())
    except Exception as exc:
        yield Call("recorder", "missed", job.missed(exc))


def secondary_only(ctx: Context, operation: str, call: Call, marks: tuple[Mark, ...]) -> Plan[None]:
    """What the primary did as a side effect of a read (a TTL renewal), done to the
    secondary (`call`'s target) as the phase gives it writes: behind in shadow-write, else
    before the call returns; a failure is journaled with `marks`, never raised (but in
    strict mode)."""
    if ctx.write_behind and not ctx.strict:
        yield Call("behind", "submit", (Behind(call, operation, marks, ctx.route.phase),))
    else:
        yield from _write_secondary(ctx, operation, Call(call.target, call.method, call.args, bounded=True), marks)


def settled(ctx: Context) -> Plan[None]:
    """Outside write-behind, writes still queued for the secondary land first, in order.
    (A replica leaving shadow-write may hold some; reads of new and later writes must
    come after them.) Nearly free when nothing is queued."""
    if not ctx.write_behind:
        yield Call("behind", "drain")


def write(
    ctx: Context,
    operation: str,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    at: Mapping[str, Any] | None = None,
    *,
    hot: bool = False,
    marks: tuple[Mark, ...] | None = None,
    secondary_operation: str | None = None,
    later: Frozen | None = None,
) -> Plan[Any]:
    """Primary first; the secondary only after the primary accepted.

    `hot` writes (put and put_writes, several per super-step; a store's batch) may go
    behind in shadow-write; deletes, copies and prunes always reach both stores before the
    call returns, after every write queued before them. `marks`: what a lost write leaves
    in the journal; by default one entry, `operation` at `at`. `secondary_operation`: how
    the secondary takes it, when not as the same call (a DualStore's `mirror`). `later`:
    the last arguments frozen (`copies`), which a write that goes behind carries instead."""
    kwargs = kwargs or {}
    if marks is None:
        marks = ((operation, at or {}),)
    behind = hot and ctx.write_behind and not ctx.strict
    if not behind:
        yield Call("behind", "drain")
    result = yield Call(ctx.route.primary, operation, args, kwargs)
    secondary = ctx.route.secondary
    if secondary is None:
        yield from _tombstones(ctx, operation, args, marks)
        return result
    method = secondary_operation or operation
    refusal = ctx.judge(secondary, operation, args) if ctx.judge is not None else None
    if refusal is not None:  # the secondary would change it quietly: held back, journaled with its rule
        yield from _missed(ctx, operation, Call(secondary, method, args, kwargs), marks, refusal)
    elif behind:
        # Unbounded in the background: the queue bounds the caller instead (_writebehind).
        # The job carries the frozen form of the last arguments instead of their copies.
        head = args if later is None else args[: len(args) - later.size]
        yield Call("behind", "submit", (Behind(Call(secondary, method, head, kwargs), operation, marks,
                                               ctx.route.phase, later),))
    else:
        yield from _write_secondary(ctx, operation, Call(secondary, method, args, kwargs, bounded=True), marks)
    return result


def _tombstones(ctx: Context, operation: str, args: tuple, marks: tuple[Mark, ...]) -> Plan[None]:
    """What a delete removed from the only store written: whole threads (delete_thread,
    prune) and items (a store's deletes). delete_for_runs names runs, which a thread repair
    cannot redo."""
    retired = other(ctx.route.primary)
    if operation == "prune":
        marks = tuple((operation, {"thread_id": str(t)}) for t in args[0])
    for name, at in marks:
        if name in _TOMBSTONED:
            yield Call("recorder", "tombstone", (Tombstone(retired, name, at, ctx.route.phase),))


def put(ctx: Context, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Plan[Any]:
    values, later = copies_for(ctx, (checkpoint, metadata, new_versions))
    at = where(config, checkpoint_id=checkpoint["id"])
    return (yield from write(ctx, "put", (_config_copy(config), *values), at=at, hot=True, later=later))


def put_writes(ctx: Context, config: Any, writes: Any, task_id: str, task_path: str) -> Plan[None]:
    values, later = copies_for(ctx, (list(writes), task_id, task_path))
    at = where(config, task_id=task_id)
    yield from write(ctx, "put_writes", (_config_copy(config), *values), at=at, hot=True, later=later)


# --------------------------------------------------------------------------- reads


def _lazy_copy(ctx: Context, source: Role, target: Role, thread_id: str) -> Plan[None]:
    """Bring a thread the read store missed over from the fallback; never fails the read."""
    try:
        yield Call("copier", "copy_thread", (source, target, thread_id))
    except Exception as exc:
        yield Call("recorder", "missed", (Missed(target, "lazy_copy", {"thread_id": thread_id}, exc, ctx.route.phase),))


def _may_fall_back(fallback: Role, thread_id: str | None) -> Plan[bool]:
    """A read miss may look in the fallback store unless that store missed a delete of the
    thread: its copy is one the application deleted, and must not come back (nor be
    lazily copied) before repair applies the delete."""
    if thread_id is None:
        return True
    return not (yield Call("recorder", "missed_delete", (fallback, thread_id)))


def _shadow_read(ctx: Context, config: Any, answer: Any) -> Plan[None]:
    """Ask new too and compare; the caller gets old's answer whatever happens here."""
    at = where(config)
    if ctx.write_behind:
        yield Call("behind", "drain")  # new must have caught up, or lag would look like a mismatch
    try:
        shadow = yield from guarded(ctx.breakers, Call("new", "get_tuple", (config,), bounded=True))
    except Exception as exc:
        yield Call("recorder", "mismatch", (Mismatch(at, ("error",), ctx.route.phase, exc),))
        return
    fields = differing_fields(answer, shadow)
    if fields:
        yield Call("recorder", "mismatch", (Mismatch(at, tuple(fields), ctx.route.phase),))


def get_tuple(ctx: Context, config: Any) -> Plan[Any]:
    yield from settled(ctx)
    thread_id = thread_of(config)
    read, fallback = ctx.reads(thread_id)
    found = yield Call(read, "get_tuple", (config,))
    if found is None and fallback is not None and (yield from _may_fall_back(fallback, thread_id)):
        found = yield Call(fallback, "get_tuple", (config,))
        if found is not None and thread_id is not None:
            yield from _lazy_copy(ctx, fallback, read, thread_id)
    elif ctx.shadow_read and read == "old" and ctx.route.secondary == "new":
        yield from _shadow_read(ctx, config, found)
    return found


def list_(ctx: Context, config: Any, kwargs: Mapping[str, Any]) -> Plan[int]:
    """Stream the read store's answer to the caller; a thread it lacks comes from the
    fallback (and is copied over) in read-switch."""
    yield from settled(ctx)
    thread_id = thread_of(config)
    read, fallback = ctx.reads(thread_id)
    count = yield from relay(read, "list", config, **kwargs)
    if count == 0 and fallback is not None and thread_id is not None \
            and (yield from _may_fall_back(fallback, thread_id)):
        count = yield from relay(fallback, "list", config, **kwargs)
        if count:
            yield from _lazy_copy(ctx, fallback, read, thread_id)
    return count


def delta_history(ctx: Context, config: Any, channels: Any) -> Plan[Any]:
    yield from settled(ctx)
    thread_id = thread_of(config)
    read, fallback = ctx.reads(thread_id)
    if fallback is not None:
        present = yield Call(read, "get_tuple", (config,))
        if present is None and (yield from _may_fall_back(fallback, thread_id)):
            read = fallback  # the read store misses this checkpoint: ask the old one
    return (yield Call(read, "get_delta_channel_history", (), {"config": config, "channels": channels}))
