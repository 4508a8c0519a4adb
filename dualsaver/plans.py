"""Every DualSaver operation written once, as a plan: a generator of effects.

A plan decides (which store, in what order, what a failure means) and yields effects;
a shell executes them and sends back the result, or throws the store's exception into
the plan. The sync shell calls `store.put(...)`, the async shell awaits `store.aput(...)`:
the decisions are never written twice. This is the shape of httpx's auth flows.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from dualsaver.phase import Phase
from dualsaver.routing import Role, Route
from dualsaver.shadow import differing_fields, in_canary


class SecondaryWriteError(RuntimeError):
    """In strict mode, a secondary store refused a write the primary accepted."""


class SecondaryTimeout(TimeoutError):
    """A secondary store did not answer within the bound."""


@dataclass(frozen=True, slots=True)
class Call:
    """Call `method` on a store; the async shell awaits `"a" + method` instead."""

    role: Role
    method: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    bounded: bool = False  # a secondary call: the shell limits how long it may take


@dataclass(frozen=True, slots=True)
class Stream:
    """Stream `list(...)` of a store to the caller; the shell sends back how many it yielded."""

    role: Role
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CopyThread:
    """Copy one whole thread from `source` to `target`, adding only what is absent."""

    source: Role
    target: Role
    thread_id: str


@dataclass(frozen=True, slots=True)
class Missed:
    """A store missed a write: count it, log it and journal it."""

    role: Role
    operation: str
    where: Mapping[str, Any]  # thread_id, checkpoint_ns, checkpoint_id, task_id
    error: BaseException
    phase: Phase  # the call's, which a background write may outlive


@dataclass(frozen=True, slots=True)
class MissedDelete:
    """Ask whether `role` missed a delete of this thread (journaled, not yet repaired);
    the shell sends back a bool."""

    role: Role
    thread_id: str


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A delete the retired store does not receive (decommission writes new only): journal
    it, so that a rollback (reverse backfill, then repair from the journal) applies it
    instead of bringing the thread back from the retired store's stale copy."""

    role: Role  # the retired store
    operation: str
    thread_id: str
    phase: Phase


@dataclass(frozen=True, slots=True)
class Behind:
    """Run `call` in the background, after every earlier Behind call of this saver, and
    without the caller waiting; if it fails, the shell records it as `Missed` here."""

    call: Call
    operation: str
    where: Mapping[str, Any]
    phase: Phase


@dataclass(frozen=True, slots=True)
class Drain:
    """Wait (bounded) until every background write has landed."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A shadow read whose answer from new differed from old's (or failed)."""

    where: Mapping[str, Any]
    fields: tuple[str, ...]
    phase: Phase
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What a plan knows: the route of the phase the call started in, and its options."""

    route: Route
    strict: bool = False
    canary_percent: float | None = None  # read-switch: share of threads (by hash) reading new
    shadow_read: bool = False  # this call is sampled for a shadow read of new
    write_behind: bool = False  # the secondary is written in the background (see saver.py)

    def reads(self, thread_id: str | None) -> tuple[Role, Role | None]:
        """The store a read of this thread goes to, and where a miss falls back."""
        route = self.route
        if self.canary_percent is not None and route.phase is Phase.READ_SWITCH:
            if thread_id is None or not in_canary(thread_id, self.canary_percent):
                return "old", None  # old is complete in read-switch: no fallback needed
        return route.read, route.fallback


Plan = Generator[Any, Any, Any]

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


def _thread_id(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    tid = config.get("configurable", {}).get("thread_id")
    return None if tid is None else str(tid)


def _write_secondary(ctx: Context, operation: str, call: Call, at: Mapping[str, Any]) -> Plan:
    try:
        yield call
    except Exception as exc:
        yield Missed(call.role, operation, at, exc, ctx.route.phase)
        if ctx.strict:
            raise SecondaryWriteError(
                f"{operation} reached the primary ({ctx.route.primary}) but the secondary"
                f" ({call.role}) failed: {type(exc).__name__}: {exc}"
            ) from exc


def settled(ctx: Context) -> Plan:
    """Outside write-behind, writes still queued for the secondary land first, in order.
    (A replica leaving shadow-write may hold some; reads of new and later writes must
    come after them.) Nearly free when nothing is queued."""
    if not ctx.write_behind:
        yield Drain()


def write(
    ctx: Context,
    operation: str,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    at: Mapping[str, Any] | None = None,
    *,
    hot: bool = False,
) -> Plan:
    """Primary first; the secondary only after the primary accepted.

    `hot` writes (put and put_writes, several per super-step) may go behind in
    shadow-write; deletes, copies and prunes always reach both stores before the call
    returns, after every write queued before them."""
    kwargs = kwargs or {}
    behind = hot and ctx.write_behind and not ctx.strict
    if not behind:
        yield Drain()
    result = yield Call(ctx.route.primary, operation, args, kwargs)
    if ctx.route.secondary is not None:
        if behind:
            # Unbounded in the background: the queue bounds the caller instead (writebehind.py)
            call = Call(ctx.route.secondary, operation, args, kwargs)
            yield Behind(call, operation, at or {}, ctx.route.phase)
        else:
            call = Call(ctx.route.secondary, operation, args, kwargs, bounded=True)
            yield from _write_secondary(ctx, operation, call, at or {})
    else:
        yield from _tombstones(ctx, operation, args, at or {})
    return result


def _tombstones(ctx: Context, operation: str, args: tuple, at: Mapping[str, Any]) -> Plan:
    """The threads a delete removed from the only store written: deletes of whole threads
    and prunes name them (delete_for_runs names runs, which a thread repair cannot redo)."""
    retired: Role = "old" if ctx.route.primary == "new" else "new"
    if operation == "delete_thread":
        threads = [str(at["thread_id"])]
    elif operation == "prune":
        threads = [str(t) for t in args[0]]
    else:
        return
    for thread_id in threads:
        yield Tombstone(retired, operation, thread_id, ctx.route.phase)


def put(ctx: Context, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Plan:
    args = (_config_copy(config), *snapshot((checkpoint, metadata, new_versions)))
    at = where(config, checkpoint_id=checkpoint["id"])
    return (yield from write(ctx, "put", args, at=at, hot=True))


def put_writes(ctx: Context, config: Any, writes: Any, task_id: str, task_path: str) -> Plan:
    args = (_config_copy(config), snapshot(list(writes)), task_id, task_path)
    at = where(config, task_id=task_id)
    return (yield from write(ctx, "put_writes", args, at=at, hot=True))


def _lazy_copy(ctx: Context, source: Role, target: Role, thread_id: str) -> Plan:
    """Bring a thread the read store missed over from the fallback; never fails the read."""
    try:
        yield CopyThread(source, target, thread_id)
    except Exception as exc:
        yield Missed(target, "lazy_copy", {"thread_id": thread_id}, exc, ctx.route.phase)


def _may_fall_back(fallback: Role, thread_id: str | None) -> Plan:
    """A read miss may look in the fallback store unless that store missed a delete of the
    thread: its copy is one the application deleted, and must not come back (nor be
    lazily copied) before repair applies the delete."""
    if thread_id is None:
        return True
    return not (yield MissedDelete(fallback, thread_id))


def _shadow_read(ctx: Context, config: Any, answer: Any) -> Plan:
    """Ask new too and compare; the caller gets old's answer whatever happens here."""
    at = where(config)
    if ctx.write_behind:
        yield Drain()  # new must have caught up, or lag would look like a mismatch
    try:
        shadow = yield Call("new", "get_tuple", (config,), bounded=True)
    except Exception as exc:
        yield Mismatch(at, ("error",), ctx.route.phase, exc)
        return
    fields = differing_fields(answer, shadow)
    if fields:
        yield Mismatch(at, tuple(fields), ctx.route.phase)


def get_tuple(ctx: Context, config: Any) -> Plan:
    yield from settled(ctx)
    thread_id = _thread_id(config)
    read, fallback = ctx.reads(thread_id)
    found = yield Call(read, "get_tuple", (config,))
    if found is None and fallback is not None and (yield from _may_fall_back(fallback, thread_id)):
        found = yield Call(fallback, "get_tuple", (config,))
        if found is not None and thread_id is not None:
            yield from _lazy_copy(ctx, fallback, read, thread_id)
    elif ctx.shadow_read and read == "old" and ctx.route.secondary == "new":
        yield from _shadow_read(ctx, config, found)
    return found


def list_(ctx: Context, config: Any, kwargs: Mapping[str, Any]) -> Plan:
    yield from settled(ctx)
    thread_id = _thread_id(config)
    read, fallback = ctx.reads(thread_id)
    count = yield Stream(read, (config,), kwargs)
    may_fall_back = count == 0 and fallback is not None and thread_id is not None
    if may_fall_back and (yield from _may_fall_back(fallback, thread_id)):
        count = yield Stream(fallback, (config,), kwargs)
        if count:
            yield from _lazy_copy(ctx, fallback, read, thread_id)
    return count


def delta_history(ctx: Context, config: Any, channels: Any) -> Plan:
    yield from settled(ctx)
    thread_id = _thread_id(config)
    read, fallback = ctx.reads(thread_id)
    if fallback is not None:
        present = yield Call(read, "get_tuple", (config,))
        if present is None and (yield from _may_fall_back(fallback, thread_id)):
            read = fallback  # the read store misses this checkpoint: ask the old one
    kwargs = {"config": config, "channels": channels}
    return (yield Call(read, "get_delta_channel_history", (), kwargs))
