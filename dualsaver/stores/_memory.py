"""Native access to an `InMemorySaver` (also a `PersistentDict`-backed one).

Its dicts already keep what the public API hides: `writes[(thread, ns, id)][(task_id, idx)]
= (task_id, channel, typed value, task_path)`. Records are encoded as `put` / `put_writes`
encode them (checkpoint without values, values as blobs keyed by channel version, metadata
through the serde) and inserted only where absent. No I/O, so the async form just wraps.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from langgraph.checkpoint.base import get_checkpoint_metadata

from dualsaver.stores.native import (
    StoredCheckpoint, ThreadItem, checked, in_write_order, stored_write, typed_value, unreadable,
)
from dualsaver.stores.serde import serde_key


class MemoryNativeStore:
    """Sync and async at once: nothing here waits, so the async forms call the sync ones."""

    exact = True

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self.serde = saver.serde

    @functools.cached_property
    def serde_key(self) -> Any:
        return serde_key(self.serde)

    def thread_ids(self) -> Iterator[str]:
        storage = self.saver.storage
        # get_tuple on a missing thread leaves an empty entry behind: skip those
        yield from sorted(t for t, spaces in list(storage.items()) if any(spaces.values()))

    def read_thread(self, thread_id: str, *, encoded: bool = False) -> Iterator[ThreadItem]:
        encoding = self.serde_key if encoded else None
        spaces = self.saver.storage.get(thread_id) or {}
        for ns in sorted(spaces):
            for checkpoint_id in sorted(spaces[ns]):
                yield self.decode(thread_id, ns, checkpoint_id, spaces[ns][checkpoint_id], encoding)

    def decode(
        self, thread_id: str, ns: str, checkpoint_id: str, saved: Any, encoding: Any = None
    ) -> ThreadItem:
        saver = self.saver
        try:
            typed_checkpoint, typed_metadata, parent = saved
            checkpoint, metadata = checked(self.serde.loads_typed(typed_checkpoint),
                self.serde.loads_typed(typed_metadata))
            checkpoint = {
                **checkpoint,
                "channel_values": saver._load_blobs(
                    thread_id, ns, checkpoint.get("channel_versions") or {}
                ),
            }
            stored = dict(saver.writes.get((thread_id, ns, checkpoint_id)) or {})
            writes = [  # with an encoding the stored bytes travel; decoded only if a target needs it
                stored_write(task_id, task_path or "", idx, channel, tuple(value), self.serde, self.serde_key, encoding)
                for (task_id, idx), (_, channel, value, task_path) in stored.items()
            ]
            return StoredCheckpoint(
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id=checkpoint_id,
                parent_checkpoint_id=parent or None,
                checkpoint=checkpoint,
                metadata=metadata,
                writes=in_write_order(writes),
                encoding=encoding,
            )
        except Exception as exc:
            return unreadable(thread_id, ns, checkpoint_id, exc)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        spaces = self.saver.storage.get(thread_id) or {}
        return {(ns, cid) for ns, ids in spaces.items() for cid in ids}

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> list[StoredCheckpoint]:
        return list(items)  # encoded as it is stored, in write_prepared

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_prepared(self.prepare_write(items))

    def delete_thread(self, thread_id: str) -> None:
        self.saver.delete_thread(thread_id)

    def write_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        saver, dumps, serde, serde_key = self.saver, self.serde.dumps_typed, self.serde, self.serde_key
        added_checkpoints = added_writes = 0
        for item in items:
            t, ns, cid = item.thread_id, item.checkpoint_ns, item.checkpoint_id
            copy: dict[str, Any] = dict(item.checkpoint)
            values = dict(copy.pop("channel_values", None) or {})
            for channel, version in (copy.get("channel_versions") or {}).items():
                key = (t, ns, channel, version)
                if key not in saver.blobs:
                    saver.blobs[key] = dumps(values[channel]) if channel in values else ("empty", b"")
            outer = saver.writes[(t, ns, cid)]
            for w in item.writes:
                if (w.task_id, w.idx) not in outer:
                    value = typed_value(item, w, serde, serde_key)
                    outer[(w.task_id, w.idx)] = (w.task_id, w.channel, value, w.task_path)
                    added_writes += 1
            if not outer:
                del saver.writes[(t, ns, cid)]  # keep the dict as put_writes would leave it
            spaces = saver.storage[t][ns]
            if cid not in spaces:
                spaces[cid] = (
                    dumps(copy),
                    dumps(get_checkpoint_metadata({}, item.metadata)),
                    item.parent_checkpoint_id,
                )
                added_checkpoints += 1
        return added_checkpoints, added_writes

    # -- the extended capabilities' primitives (see `dualsaver.stores._capabilities`) -----

    def run_checkpoints(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        runs = set(run_ids)
        found: dict[str, list[tuple[str, str]]] = {}
        for thread_id, spaces in list(self.saver.storage.items()):
            for ns, ids in list(spaces.items()):
                for cid, (_, typed_metadata, _) in list(ids.items()):
                    with contextlib.suppress(Exception):  # an unreadable row belongs to no run we know
                        run_id = (self.serde.loads_typed(typed_metadata) or {}).get("run_id")
                        if run_id is not None and str(run_id) in runs:
                            found.setdefault(thread_id, []).append((ns, cid))
        return found

    def delete_checkpoints(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> None:
        """The checkpoints named, their writes, and the blobs only they referenced."""
        saver, spaces = self.saver, self.saver.storage.get(thread_id) or {}
        dropped: dict[str, set[tuple[str, Any]]] = {}  # ns -> (channel, version) of what was deleted
        for ns, cid in set(keys):
            saved = spaces.get(ns, {}).pop(cid, None)
            saver.writes.pop((thread_id, ns, cid), None)
            if saved is not None:
                dropped.setdefault(ns, set()).update(self._versions(saved))
        for ns, versions in dropped.items():
            kept = {pair for saved in list(spaces.get(ns, {}).values()) for pair in self._versions(saved)}
            for channel, version in versions - kept:
                saver.blobs.pop((thread_id, ns, channel, version), None)

    def _versions(self, saved: Any) -> set[tuple[str, Any]]:
        try:
            return set((self.serde.loads_typed(saved[0]).get("channel_versions") or {}).items())
        except Exception:  # an unreadable row: its blobs stay
            return set()

    async def arun_checkpoints(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        return self.run_checkpoints(run_ids)

    async def adelete_checkpoints(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> None:
        self.delete_checkpoints(thread_id, keys)

    # -- the async forms: nothing waits, so they run inline --------------------------------

    async def athread_ids(self) -> AsyncIterator[str]:
        for thread_id in self.thread_ids():
            yield thread_id

    async def aread_thread(self, thread_id: str, *, encoded: bool = False) -> AsyncIterator[ThreadItem]:
        for item in self.read_thread(thread_id, encoded=encoded):
            yield item

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return self.checkpoint_keys(thread_id)

    async def awrite_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_prepared(items)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_checkpoints(items)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)
