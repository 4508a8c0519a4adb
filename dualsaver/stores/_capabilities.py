"""The extended capabilities (`delete_for_runs`, `copy_thread`, `prune`) of any saver that has
a native store, whether or not the saver implements them.

Each one is written once, as a plan over the target "store" (a `NativeStore`, or an
`AsyncNativeStore` awaited), from the primitives every native adapter has (`checkpoint_keys`,
`read_thread`, `write_checkpoints`, `delete_thread`) and two that the capabilities add:

- `run_checkpoints(run_ids)`: the (namespace, id) of each checkpoint whose metadata `run_id`
  is one of these, by thread (LangGraph records the run in each checkpoint's metadata, as the
  official savers read it);
- `delete_checkpoints(thread_id, keys)`: those checkpoints with their pending writes (and
  what only they referenced: blobs, a latest pointer).

`Capable(saver)` answers the six methods (and `run_threads`, which threads a
`delete_for_runs` touches, for the journal) with the saver's own method where its class
overrides it, and with these plans otherwise. `offers_capability(saver, name)` says whether it can.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from dualsaver.errors import UnreadableRow
from dualsaver.sansio import AsyncTargets, Call, Plan, Targets, arun, gather, run
from dualsaver.stores._adapters import ThreadedStore, anative_for, native_for
from dualsaver.stores.native import StoredCheckpoint, Unreadable

try:  # LangGraph's DeltaChannel snapshot (a beta type; absent before DeltaChannel existed)
    from langgraph.checkpoint.serde.types import _DeltaSnapshot as DeltaSnapshot
except ImportError:  # pragma: no cover - older langgraph-checkpoint
    DeltaSnapshot = None  # type: ignore[assignment,misc]

CAPABILITIES = ("delete_for_runs", "copy_thread", "prune")
PRUNE_STRATEGIES = ("keep_latest", "delete")  # what the official savers accept
# the metadata LangGraph writes on the checkpoints of a graph with a DeltaChannel (PostgresSaver
# looks for the same keys)
DELTA_METADATA = frozenset({"counters_since_delta_snapshot", "delta_writes_versioned"})
# the native primitives each capability needs besides those every adapter has
_NEEDS = {
    "delete_for_runs": ("run_checkpoints", "delete_checkpoints"), "copy_thread": (), "prune": ("delete_checkpoints",),
}


def overrides(saver: Any, name: str) -> bool:
    """Whether `saver`'s class implements `name` (how LangGraph and the conformance suite tell)."""
    return getattr(type(saver), name, None) is not getattr(BaseCheckpointSaver, name, None)


# --------------------------------------------------------------------------- plans


def plan_run_threads(run_ids: Sequence[str]) -> Plan[list[str]]:
    found = yield Call("store", "run_checkpoints", (list(run_ids),))
    return sorted(found)


def plan_delete_for_runs(run_ids: Sequence[str]) -> Plan[None]:
    runs = [str(r) for r in run_ids]
    if not runs:
        return
    found = yield Call("store", "run_checkpoints", (runs,))
    for thread_id in sorted(found):
        yield Call("store", "delete_checkpoints", (thread_id, sorted(found[thread_id])))


def plan_copy_thread(source_thread_id: str, target_thread_id: str) -> Plan[None]:
    """Every checkpoint of the source, with its writes (task paths and order kept), inserted
    under the target thread if absent. A row that does not load stops the copy: a copy
    without it would be a different conversation."""
    items = yield from gather("store", "read_thread", str(source_thread_id))
    broken = [i for i in items if isinstance(i, Unreadable)]
    if broken:
        raise UnreadableRow(
            f"thread {source_thread_id!r} has {len(broken)} unreadable checkpoint(s): {broken[0].error}")
    copies = [dataclasses.replace(i, thread_id=str(target_thread_id)) for i in items if isinstance(i, StoredCheckpoint)]
    if copies:
        yield Call("store", "write_checkpoints", (copies,))


def latest_per_namespace(keys: set[tuple[str, str]]) -> dict[str, str]:
    """The newest checkpoint id of each namespace (ids sort by time)."""
    newest: dict[str, str] = {}
    for ns, checkpoint_id in keys:
        if checkpoint_id > newest.get(ns, ""):
            newest[ns] = checkpoint_id
    return newest


def uses_delta_channel(items: Sequence[Any]) -> bool:
    """Whether a thread's checkpoints come from a graph with a `DeltaChannel`: its value is
    rebuilt by replaying the writes of the checkpoints before, back to its last snapshot."""
    for item in items:
        if not isinstance(item, StoredCheckpoint):
            continue
        if DELTA_METADATA.intersection(item.metadata or {}):
            return True
        values = (item.checkpoint.get("channel_values") or {}).values()
        if DeltaSnapshot is not None and any(isinstance(v, DeltaSnapshot) for v in values):
            return True
    return False


def plan_refuse_delta_threads(thread_ids: Sequence[str]) -> Plan[None]:
    """keep_latest would delete the checkpoints whose writes a DeltaChannel replays (the thread
    would read back with that channel's history gone): refuse such threads, before pruning any,
    with the error PostgresSaver raises, so that both stores of a pair answer alike."""
    delta = []
    for thread_id in thread_ids:
        if uses_delta_channel((yield from gather("store", "read_thread", thread_id))):
            delta.append(thread_id)
    if delta:
        names = ", ".join(sorted(delta))
        raise NotImplementedError(f"keep_latest can't prune threads that use a DeltaChannel: {names}")


def plan_prune(thread_ids: Sequence[str], strategy: str) -> Plan[None]:
    """`delete`: the whole threads. `keep_latest`: the newest checkpoint of each namespace
    and its writes stay; the rest goes. A checkpoint written meanwhile is newer than all
    those read, so it is never among those deleted. A thread of a graph with a DeltaChannel
    is refused (`plan_refuse_delta_threads`); to tell, keep_latest reads each thread whole."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
    if strategy not in PRUNE_STRATEGIES:
        raise ValueError(f"Unknown prune strategy: {strategy!r}")
    threads = [str(t) for t in thread_ids]
    if strategy == "keep_latest":
        yield from plan_refuse_delta_threads(threads)
    for thread_id in threads:
        if strategy == "delete":
            yield Call("store", "delete_thread", (thread_id,))
            continue
        keys = yield Call("store", "checkpoint_keys", (thread_id,))
        newest = latest_per_namespace(keys)
        doomed = sorted((ns, cid) for ns, cid in keys if cid != newest[ns])
        if doomed:
            yield Call("store", "delete_checkpoints", (thread_id, doomed))


# --------------------------------------------------------------------------- the shell


def _native(saver: Any, *, asynchronous: bool) -> Any:
    try:
        return anative_for(saver) if asynchronous else native_for(saver)
    except TypeError:  # an async saver has no sync native store
        return None


def _has(store: Any, needs: Sequence[str], asynchronous: bool) -> bool:
    """Whether a native store has these primitives (exact adapters only: the public-API one
    cannot delete single checkpoints)."""
    if store is None or not getattr(store, "exact", False):
        return False
    if isinstance(store, ThreadedStore):  # its a-forms exist when the sync store has the plain ones
        store, asynchronous = store.store, False
    return all(hasattr(store, ("a" if asynchronous else "") + need) for need in needs)


def offers_capability(saver: Any, name: str) -> bool:
    """Whether `Capable(saver)` can do `name` (a capability or its ``a`` form)."""
    if overrides(saver, name):
        return True
    asynchronous = name not in CAPABILITIES
    store = _native(saver, asynchronous=asynchronous)
    return _has(store, _NEEDS[name[1:] if asynchronous else name], asynchronous)


class Capable:
    """A saver's extended capabilities: its own methods where it has them, else the plans
    above over its native store."""

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self._store: Any = None
        self._astore: Any = None

    def _io(self) -> Targets:
        if self._store is None:
            store = _native(self.saver, asynchronous=False)
            if store is None:
                raise NotImplementedError(f"{type(self.saver).__name__} is async: use the a-prefixed method")
            self._store = store
        return Targets(store=self._store)

    def _aio(self) -> AsyncTargets:
        if self._astore is None:
            self._astore = anative_for(self.saver)
        return AsyncTargets(store=self._astore)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if overrides(self.saver, "delete_for_runs"):
            return self.saver.delete_for_runs(run_ids)
        run(plan_delete_for_runs(run_ids), self._io())

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if overrides(self.saver, "adelete_for_runs"):
            return await self.saver.adelete_for_runs(run_ids)
        await arun(plan_delete_for_runs(run_ids), self._aio())

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        if overrides(self.saver, "copy_thread"):
            return self.saver.copy_thread(source_thread_id, target_thread_id)
        run(plan_copy_thread(source_thread_id, target_thread_id), self._io())

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        if overrides(self.saver, "acopy_thread"):
            return await self.saver.acopy_thread(source_thread_id, target_thread_id)
        await arun(plan_copy_thread(source_thread_id, target_thread_id), self._aio())

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if overrides(self.saver, "prune"):
            return self.saver.prune(thread_ids, strategy=strategy)
        run(plan_prune(thread_ids, strategy), self._io())

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if overrides(self.saver, "aprune"):
            return await self.saver.aprune(thread_ids, strategy=strategy)
        await arun(plan_prune(thread_ids, strategy), self._aio())

    def run_threads(self, run_ids: Sequence[str]) -> list[str]:
        """The threads holding checkpoints of these runs ([] where the store cannot say)."""
        if not _has(_native(self.saver, asynchronous=False), ("run_checkpoints",), False):
            return []
        return run(plan_run_threads(run_ids), self._io())

    async def arun_threads(self, run_ids: Sequence[str]) -> list[str]:
        if not _has(_native(self.saver, asynchronous=True), ("run_checkpoints",), True):
            return []
        return await arun(plan_run_threads(run_ids), self._aio())
