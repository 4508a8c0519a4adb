"""Extended capabilities, present on a DualSaver only when both wrapped savers have them.

The conformance suite (and LangGraph tooling) detects a capability by whether a class
overrides the method, so a DualSaver over a pair that cannot prune must not even have a
`prune` method of its own. Each wrapping pair gets a subclass with exactly the mixins the
pair supports.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from dualsaver.saver import _plans as plans

EXTENDED = ("delete_for_runs", "copy_thread", "prune")


def supports(saver: BaseCheckpointSaver, name: str) -> bool:
    """Whether `saver`'s class overrides `name` (how the conformance suite detects it)."""
    return getattr(type(saver), name, None) is not getattr(BaseCheckpointSaver, name)


class DeleteForRuns:
    def delete_for_runs(self: Any, run_ids: Sequence[str]) -> None:
        ctx, op = self._begin("delete_for_runs")
        self._sync.run(plans.write(ctx, "delete_for_runs", (list(run_ids),)), op)

    async def adelete_for_runs(self: Any, run_ids: Sequence[str]) -> None:
        ctx, op = self._begin("delete_for_runs")
        await self._async.run(plans.write(ctx, "delete_for_runs", (list(run_ids),)), op)


class CopyThread:
    def copy_thread(self: Any, source_thread_id: str, target_thread_id: str) -> None:
        ctx, op = self._begin("copy_thread", thread_id=target_thread_id)
        at = {"thread_id": str(target_thread_id)}
        self._sync.run(plans.write(ctx, "copy_thread", (source_thread_id, target_thread_id), at=at), op)

    async def acopy_thread(self: Any, source_thread_id: str, target_thread_id: str) -> None:
        ctx, op = self._begin("copy_thread", thread_id=target_thread_id)
        at = {"thread_id": str(target_thread_id)}
        await self._async.run(plans.write(ctx, "copy_thread", (source_thread_id, target_thread_id), at=at), op)


class Prune:
    def prune(self: Any, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ctx, op = self._begin("prune")
        self._sync.run(plans.write(ctx, "prune", (list(thread_ids),), {"strategy": strategy}), op)

    async def aprune(
        self: Any, thread_ids: Sequence[str], *, strategy: str = "keep_latest"
    ) -> None:
        ctx, op = self._begin("prune")
        await self._async.run(plans.write(ctx, "prune", (list(thread_ids),), {"strategy": strategy}), op)


MIXINS = {"delete_for_runs": DeleteForRuns, "copy_thread": CopyThread, "prune": Prune}


@cache
def _derived(base: type, methods: frozenset[str]) -> type:
    """A subclass of `base` carrying exactly `methods` (sync and async forms judged apart:
    the sync PostgresSaver has `prune` but no `aprune`, an async saver the reverse)."""
    if not methods:
        return base
    namespace: dict[str, object] = {"__module__": base.__module__, "_capabilities_fixed": True}
    for capability in EXTENDED:
        for name in (capability, "a" + capability):
            if name in methods:
                namespace[name] = MIXINS[capability].__dict__[name]
    label = "+".join(c for c in EXTENDED if c in methods or "a" + c in methods)
    return type(f"{base.__name__}[{label}]", (base,), namespace)


def class_with_capabilities(base: type, old: BaseCheckpointSaver, new: BaseCheckpointSaver) -> type:
    if base.__dict__.get("_capabilities_fixed"):
        return base  # already a derived class
    names = (name for c in EXTENDED for name in (c, "a" + c))
    return _derived(base, frozenset(n for n in names if supports(old, n) and supports(new, n)))
