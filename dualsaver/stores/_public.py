"""The fallback for a saver with no native adapter: its public API only, so `exact` is False.

A `CheckpointTuple` carries no write `task_path` and no `idx`, so what this adapter reads
has `task_path=""` and idx counted per task, and a copy made through it may reorder the
writes of parallel branches. It still never overwrites: a checkpoint is `put` only when
`get_tuple` does not find it, and a task's writes only when the target has none from it.
Each operation is one plan (see `dualsaver.sansio`); one class offers the sync and the async
forms, as `BaseCheckpointSaver` does (use the forms the wrapped saver implements).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from langgraph.checkpoint.base import WRITES_IDX_MAP, CheckpointTuple

from dualsaver.sansio import END, AsyncTargets, Call, Emit, Next, Plan, Targets, arun, astream, gather, run, stream
from dualsaver.stores.native import StoredCheckpoint, StoredWrite, ThreadItem, unreadable


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


def _write_plan(items: Iterable[StoredCheckpoint]) -> Plan[tuple[int, int]]:
    added_checkpoints = added_writes = 0
    for item in items:
        where = {
            "configurable": {
                "thread_id": item.thread_id,
                "checkpoint_ns": item.checkpoint_ns,
                "checkpoint_id": item.checkpoint_id,
            }
        }
        existing = yield Call("saver", "get_tuple", (where,))
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
            yield Call("saver", "put", (parent, item.checkpoint, item.metadata, versions))
            added_checkpoints += 1
        have = {w[0] for w in (existing.pending_writes if existing else None) or ()}
        by_task: dict[str, list[StoredWrite]] = {}
        for w in item.writes:
            if w.task_id not in have:
                by_task.setdefault(w.task_id, []).append(w)
        for task_id, ws in by_task.items():
            ws.sort(key=lambda w: w.idx if w.idx >= 0 else -1 - w.idx + 10**9)
            yield Call("saver", "put_writes", (where, [(w.channel, w.value) for w in ws], task_id, ws[0].task_path))
            added_writes += len(ws)
    return added_checkpoints, added_writes


def _thread_config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _sort_key(item: ThreadItem) -> tuple[str, str]:
    return (item.checkpoint_ns, item.checkpoint_id)


def _thread_ids_plan() -> Plan[None]:
    # the public API cannot enumerate threads, only checkpoints: collect the ids, then sort
    tuples = yield Call("saver", "list", (None,), stream=True)
    ids: set[str] = set()
    while (t := (yield Next(tuples))) is not END:
        ids.add(str(t.config["configurable"]["thread_id"]))
    yield Emit(sorted(ids))


def _read_thread_plan(thread_id: str) -> Plan[None]:
    items: list[ThreadItem] = []
    try:
        items.extend(map(to_stored, (yield from gather("saver", "list", _thread_config(thread_id)))))
    except Exception as exc:  # a thread that does not load is reported, never a crash
        items.append(unreadable(thread_id, "", "", exc))
    yield Emit(sorted(items, key=_sort_key))


def _keys_plan(thread_id: str) -> Plan[set[tuple[str, str]]]:
    found = yield from gather("saver", "list", _thread_config(thread_id))
    confs = [t.config["configurable"] for t in found]
    return {(conf.get("checkpoint_ns", ""), conf["checkpoint_id"]) for conf in confs}


class PublicNativeStore:
    """Native access through `list` / `get_tuple` / `put` / `put_writes` (and their async forms)."""

    exact = False

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self._io = Targets(saver=saver)
        self._aio = AsyncTargets(saver=saver)

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> list[StoredCheckpoint]:
        return list(items)

    def thread_ids(self) -> Iterator[str]:
        return stream(_thread_ids_plan(), self._io)

    def read_thread(self, thread_id: str) -> Iterator[ThreadItem]:
        return stream(_read_thread_plan(thread_id), self._io)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return run(_keys_plan(thread_id), self._io)

    def write_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return run(_write_plan(items), self._io)

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return run(_write_plan(items), self._io)

    def delete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    def athread_ids(self) -> AsyncIterator[str]:
        return astream(_thread_ids_plan(), self._aio)

    def aread_thread(self, thread_id: str) -> AsyncIterator[ThreadItem]:
        return astream(_read_thread_plan(thread_id), self._aio)

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await arun(_keys_plan(thread_id), self._aio)

    async def awrite_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return await arun(_write_plan(items), self._aio)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await arun(_write_plan(items), self._aio)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)
