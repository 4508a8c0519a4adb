"""Extended capabilities (`delete_for_runs`, `copy_thread`, `prune`, sync and async) of the
composite savers, present whenever both wrapped savers can do them: with their own method, or
through their native store (`dualsaver.stores.Capable`), so that they never depend on what
the old saver happened to implement.

The conformance suite (and LangGraph Agent Server) detects a capability by whether a class
overrides the method, so a composite over a pair that cannot prune must not even have a
`prune` method of its own: each wrapping pair gets a subclass with exactly the methods the
pair supports (sync and async judged apart: an async saver has no sync native store).

Each capability is one plan on the phase's route, as every write: the primary first, then
the secondary (within its bound, through its breaker); a secondary failure is journaled once
per thread it touched, so that `repair --journal` replaces those threads from the primary.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from dualsaver.sansio import Call, Plan
from dualsaver.saver import _plans as plans
from dualsaver.stores import CAPABILITIES, offers_capability

EXTENDED = CAPABILITIES
METHODS = frozenset(name for c in CAPABILITIES for name in (c, "a" + c)) | {"run_threads", "arun_threads"}


def capability_write(
    ctx: plans.Context, operation: str, args: tuple, kwargs: dict[str, Any], threads: Sequence[str]
) -> Plan[None]:
    """Primary first, then the secondary; never behind (after every write queued before)."""
    yield Call("behind", "drain")
    yield Call(ctx.route.primary, operation, args, kwargs)
    secondary = ctx.route.secondary
    if secondary is None:
        yield from plans._tombstones(ctx, operation, args, ())
        return
    call = Call(secondary, operation, args, kwargs, bounded=True)
    try:
        yield from plans.guarded(ctx.breakers, call)
    except Exception as exc:
        marks: tuple[plans.Mark, ...] = tuple((operation, {"thread_id": t}) for t in threads)
        marks = marks or ((operation, {"thread_id": None}),)
        yield from plans._missed(ctx, operation, call, marks, exc)


def delete_for_runs(ctx: plans.Context, run_ids: Sequence[str]) -> Plan[None]:
    runs = [str(r) for r in run_ids]
    if not runs:
        return
    # the threads the runs touched, read before they go, for the journal
    threads = yield Call(ctx.route.primary, "run_threads", (runs,))
    yield from capability_write(ctx, "delete_for_runs", (runs,), {}, threads)


def copy_thread(ctx: plans.Context, source_thread_id: str, target_thread_id: str) -> Plan[None]:
    args = (str(source_thread_id), str(target_thread_id))
    yield from capability_write(ctx, "copy_thread", args, {}, [str(target_thread_id)])


def prune(ctx: plans.Context, thread_ids: Sequence[str], strategy: str) -> Plan[None]:
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
    threads = [str(t) for t in thread_ids]
    yield from capability_write(ctx, "prune", (threads,), {"strategy": strategy}, threads)


class DeleteForRuns:
    def delete_for_runs(self: Any, run_ids: Sequence[str]) -> None:
        ctx, op = self._begin("delete_for_runs")
        self._sync.run(delete_for_runs(ctx, run_ids), op)

    async def adelete_for_runs(self: Any, run_ids: Sequence[str]) -> None:
        ctx, op = self._begin("delete_for_runs")
        await self._async.run(delete_for_runs(ctx, run_ids), op)


class CopyThread:
    def copy_thread(self: Any, source_thread_id: str, target_thread_id: str) -> None:
        ctx, op = self._begin("copy_thread", thread_id=target_thread_id)
        self._sync.run(copy_thread(ctx, source_thread_id, target_thread_id), op)

    async def acopy_thread(self: Any, source_thread_id: str, target_thread_id: str) -> None:
        ctx, op = self._begin("copy_thread", thread_id=target_thread_id)
        await self._async.run(copy_thread(ctx, source_thread_id, target_thread_id), op)


class Prune:
    def prune(self: Any, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ctx, op = self._begin("prune")
        self._sync.run(prune(ctx, thread_ids, strategy), op)

    async def aprune(self: Any, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ctx, op = self._begin("prune")
        await self._async.run(prune(ctx, thread_ids, strategy), op)


MIXINS = {"delete_for_runs": DeleteForRuns, "copy_thread": CopyThread, "prune": Prune}


@cache
def _derived(base: type, methods: frozenset[str]) -> type:
    """A subclass of `base` carrying exactly `methods`."""
    if not methods:
        return base
    namespace: dict[str, object] = {"__module__": base.__module__, "_capabilities_fixed": True}
    for capability in EXTENDED:
        for name in (capability, "a" + capability):
            if name in methods:
                namespace[name] = MIXINS[capability].__dict__[name]
    label = "+".join(c for c in EXTENDED if c in methods or "a" + c in methods)
    return type(f"{base.__name__}[{label}]", (base,), namespace)


def class_with_capabilities(base: type, first: Any, second: Any) -> type:
    """`base`, or its subclass with the capabilities both wrapped savers can do."""
    if base.__dict__.get("_capabilities_fixed"):
        return base  # already a derived class
    names = (name for c in EXTENDED for name in (c, "a" + c))
    return _derived(base, frozenset(n for n in names if offers_capability(first, n) and offers_capability(second, n)))
