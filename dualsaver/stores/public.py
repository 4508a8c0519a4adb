"""The fallback for a saver with no native adapter: its public API only, so `exact` is False.

A `CheckpointTuple` carries no write `task_path` and no `idx`, so what this adapter reads
has `task_path=""` and idx counted per task, and a copy made through it may reorder the
writes of parallel branches. It still never overwrites: a checkpoint is `put` only when
`get_tuple` does not find it, and a task's writes only when the target has none from it.
The plans below are shared by the sync and async shells.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import WRITES_IDX_MAP, CheckpointTuple

from dualsaver.stores.native import StoredCheckpoint, StoredWrite, ThreadItem
from dualsaver.stores.sql import unreadable


@dataclass(frozen=True, slots=True)
class Call:
    method: str  # get_tuple | put | put_writes (the async shell adds the "a")
    args: tuple[Any, ...]


def to_stored(t: CheckpointTuple) -> StoredCheckpoint:
    conf = t.config["configurable"]
    seen: dict[str, int] = {}
    writes = []
    for task_id, channel, value in t.pending_writes or ():
        position = seen.get(task_id, 0)
        seen[task_id] = position + 1
        writes.append(StoredWrite(task_id, "", WRITES_IDX_MAP.get(channel, position), channel, value))
    parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    return StoredCheckpoint(
        thread_id=str(conf["thread_id"]),
        checkpoint_ns=conf.get("checkpoint_ns", ""),
        checkpoint_id=conf["checkpoint_id"],
        parent_checkpoint_id=parent or None,
        checkpoint=t.checkpoint,
        metadata=t.metadata,
        writes=tuple(writes),
    )


def write_plan(items: Iterable[StoredCheckpoint]) -> Generator[Call, Any, tuple[int, int]]:
    added_checkpoints = added_writes = 0
    for item in items:
        where = {
            "configurable": {
                "thread_id": item.thread_id,
                "checkpoint_ns": item.checkpoint_ns,
                "checkpoint_id": item.checkpoint_id,
            }
        }
        existing = yield Call("get_tuple", (where,))
        if existing is None:
            parent = {
                "configurable": {
                    "thread_id": item.thread_id,
                    "checkpoint_ns": item.checkpoint_ns,
                    **(
                        {"checkpoint_id": item.parent_checkpoint_id}
                        if item.parent_checkpoint_id
                        else {}
                    ),
                }
            }
            versions = dict(item.checkpoint.get("channel_versions") or {})
            yield Call("put", (parent, item.checkpoint, item.metadata, versions))
            added_checkpoints += 1
        have = {w[0] for w in (existing.pending_writes if existing else None) or ()}
        by_task: dict[str, list[StoredWrite]] = {}
        for w in item.writes:
            if w.task_id not in have:
                by_task.setdefault(w.task_id, []).append(w)
        for task_id, ws in by_task.items():
            ws.sort(key=lambda w: w.idx if w.idx >= 0 else -1 - w.idx + 10**9)
            yield Call("put_writes", (where, [(w.channel, w.value) for w in ws], task_id, ws[0].task_path))
            added_writes += len(ws)
    return added_checkpoints, added_writes


def _thread_config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _sort_key(item: ThreadItem) -> tuple[str, str]:
    return (item.checkpoint_ns, item.checkpoint_id)


class PublicNativeStore:
    """Sync shell over `list` / `get_tuple` / `put` / `put_writes`."""

    exact = False

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    def thread_ids(self) -> Iterator[str]:
        # the public API cannot enumerate threads, only checkpoints: collect, then sort
        yield from sorted({str(t.config["configurable"]["thread_id"]) for t in self.saver.list(None)})

    def read_thread(self, thread_id: str) -> Iterator[ThreadItem]:
        items: list[ThreadItem] = []
        try:
            for t in self.saver.list(_thread_config(thread_id)):
                items.append(to_stored(t))
        except Exception as exc:
            items.append(unreadable(thread_id, "", "", exc))
        yield from sorted(items, key=_sort_key)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return {
            (t.config["configurable"].get("checkpoint_ns", ""), t.config["configurable"]["checkpoint_id"])
            for t in self.saver.list(_thread_config(thread_id))
        }

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        plan = write_plan(items)
        try:
            call = next(plan)
            while True:
                call = plan.send(getattr(self.saver, call.method)(*call.args))
        except StopIteration as stop:
            return stop.value


class AsyncPublicNativeStore:
    """Async shell over `alist` / `aget_tuple` / `aput` / `aput_writes`."""

    exact = False

    def __init__(self, saver: Any) -> None:
        self.saver = saver

    async def thread_ids(self) -> AsyncIterator[str]:
        ids = {str(t.config["configurable"]["thread_id"]) async for t in self.saver.alist(None)}
        for thread_id in sorted(ids):
            yield thread_id

    async def read_thread(self, thread_id: str) -> AsyncIterator[ThreadItem]:
        items: list[ThreadItem] = []
        try:
            async for t in self.saver.alist(_thread_config(thread_id)):
                items.append(to_stored(t))
        except Exception as exc:
            items.append(unreadable(thread_id, "", "", exc))
        for item in sorted(items, key=_sort_key):
            yield item

    async def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return {
            (t.config["configurable"].get("checkpoint_ns", ""), t.config["configurable"]["checkpoint_id"])
            async for t in self.saver.alist(_thread_config(thread_id))
        }

    async def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        plan = write_plan(items)
        try:
            call = next(plan)
            while True:
                call = plan.send(await getattr(self.saver, "a" + call.method)(*call.args))
        except StopIteration as stop:
            return stop.value
