"""Every decision of the Redis checkpointer, written once for the sync and async savers.

Each operation is a *plan* (see `dualsaver.sansio`): a generator that yields what it needs
from Redis (`ops.script`, `ops.command`, or `ops.pipeline` of them) and receives the reply,
and yields `Emit` for what it hands to the caller. The savers run a plan with
`sansio.run` / `sansio.arun` over a sync or async client (`_io`); nothing here does I/O.

Keys of one thread (all carry the hash tag ``{prefix:thread}``, so on a cluster they share
a slot and one Lua script may touch them all; ``{``, ``}`` and ``%`` in a thread id are
percent-escaped in the key):

    {prefix:thread}:ids   zset  "ns\\0checkpoint_id", score 0 (ordered by ns, then id)
    {prefix:thread}:cp    hash  member -> record (parent, run_id, refs, checkpoint, metadata)
    {prefix:thread}:bl    hash  "ns\\0channel\\0version" -> channel value (one blob per
                                version, so a channel that did not change is not rewritten)
    {prefix:thread}:w     hash  member -> that checkpoint's pending writes

The thread index lives in ``{prefix}:threads`` (a zset, score 0, so ZRANGEBYLEX pages the
ids in ascending order without KEYS) and ``{prefix}:threads:exp`` (expiry per thread when a
TTL is set). On a cluster both sit in the slot of ``{prefix}``, i.e. on one node, which every
put touches first; on a standalone server the put script updates them atomically.
Index-first means a crash can leave an indexed thread with no data (enumeration skips it),
never data the index does not list. Threads that expired are dropped from the index by a
sweep at the start of each enumeration.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from dualsaver.errors import UnreadableRow
from dualsaver.redis._threads import ThreadPlans
from dualsaver.redis.codec import (
    Record,
    WriteEntry,
    blob_field,
    decode_blob,
    decode_writes,
    encode_blob,
    encode_writes,
    member,
    split_member,
)
from dualsaver.redis.ops import PAGE, chunks, command, pairs, pipeline, replicated, script
from dualsaver.sansio import Call, Emit, Plan

try:  # DeltaChannel is beta; older langgraph-checkpoint releases lack it
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
except ImportError:  # pragma: no cover
    _DeltaSnapshot = ()  # type: ignore[assignment,misc]

DELTA_METADATA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")

def _check_name(what: str, value: str) -> str:
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


def uses_delta(metadata: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether a checkpoint belongs to a thread that uses a DeltaChannel (prune refuses it)."""
    return any(k in metadata for k in DELTA_METADATA_KEYS) or any(
        isinstance(v, _DeltaSnapshot) for v in values.values()
    )


def matches(metadata: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """Top-level equality per key, as InMemorySaver and SqliteSaver filter."""
    return not filter or all(metadata.get(k) == v for k, v in filter.items())


class BaseRedisSaver(ThreadPlans, BaseCheckpointSaver[str]):
    """Key layout, encoding and plans shared by RedisSaver and AsyncRedisSaver.

    DeltaChannel caveats (see `BaseCheckpointSaver.prune`): `prune("keep_latest")` refuses
    threads whose checkpoints carry delta-channel counters or snapshots, since dropping
    ancestors would silently empty those channels; `delete_for_runs` deletes what it is
    asked to, even ancestors a DeltaChannel still replays; `copy_thread` copies the whole
    parent chain, so delta state stays reconstructible on the copy.
    """

    _io: Any  # the targets its plans run against: sync (RedisSaver) or async (AsyncRedisSaver)

    def bounds_reads_within(self, timeout: float | None) -> bool:
        """Whether `get_tuple_within` / `aget_tuple_within` keep a bound of `timeout` seconds
        themselves, on the caller's thread or task (see the savers)."""
        return False

    def __init__(
        self,
        *,
        serde: SerializerProtocol | None = None,
        prefix: str = "dualsaver",
        ttl: float | None = None,
        cluster: bool = False,
        wait: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        super().__init__(serde=serde)
        if not prefix or any(c in prefix for c in "{}"):
            raise ValueError("prefix must be non-empty and contain no '{' or '}'")
        if wait and cluster:
            raise ValueError("wait is for a master with replicas, not a Redis Cluster")
        self.wait = wait
        self._wait_ms = max(1, int(wait_timeout * 1000))
        self.prefix = prefix
        self.cluster = cluster
        self.set_ttl(ttl)
        self._index_keys = (f"{{{prefix}}}:threads", f"{{{prefix}}}:threads:exp")

    def set_ttl(self, ttl: float | None) -> None:
        """Seconds a thread's keys live after its last write (None: forever); applies to
        the writes that follow."""
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        self.ttl = ttl
        self._ttl_ms = int(ttl * 1000) if ttl else 0

    # -- key layout ---------------------------------------------------------------------

    def _keys(self, thread_id: str) -> tuple[str, str, str, str]:
        escaped = thread_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        tag = f"{{{self.prefix}:{escaped}}}"
        return (f"{tag}:ids", f"{tag}:cp", f"{tag}:bl", f"{tag}:w")

    def _script_keys(self, thread_id: str) -> tuple[str, ...]:
        """Keys of a script that also maintains the index (only legal off-cluster)."""
        keys = self._keys(thread_id)
        return keys if self.cluster else keys + self._index_keys

    def _index_first(self, thread_id: str) -> Plan:
        """On a cluster, list the thread in the index before writing its data."""
        if self.cluster:
            yield script("index", self._index_keys, ("add", self._ttl_ms, thread_id))

    def _write(
        self,
        thread_id: str,
        *,
        cp_mode: str,
        w_mode: str,
        checkpoints: Sequence[tuple[Any, bytes]] = (),
        blobs: Sequence[tuple[Any, bytes]] = (),
        writes: Sequence[tuple[Any, bytes]] = (),
    ) -> Call:
        args: list[Any] = [self._ttl_ms, thread_id, cp_mode, w_mode]
        for group in (checkpoints, blobs, writes):
            args.append(len(group))
            for pair in group:
                args.extend(pair)
        return script("write", self._script_keys(thread_id), tuple(args))

    def _acknowledged(self, call: Call) -> Plan:
        """Run a write; with `wait`, in one pipeline with WAIT on the same connection, so it
        returns only once `wait` replicas hold it (else `NotReplicated`: not acknowledged)."""
        if not self.wait:
            return (yield call)
        reply, replicas = yield pipeline([call, command("WAIT", self.wait, self._wait_ms)])
        replicated(replicas, self.wait, self._wait_ms)
        return reply

    # -- decoding -----------------------------------------------------------------------

    def _values(
        self, record: Record, blobs: Sequence[bytes | None], load: Callable[[tuple[str, bytes]], Any] | None = None
    ) -> dict[str, Any]:
        """The channel values of a checkpoint's blobs, each loaded by `load` (the serializer's
        `loads_typed`; a native reader may keep them as their bytes)."""
        load = load or self.serde.loads_typed
        values: dict[str, Any] = {}
        for (channel, _), raw in zip(record.refs, blobs):
            if raw is None:
                continue
            typed = decode_blob(raw)
            if typed[0] != "empty":
                values[channel] = load(typed)
        return values

    def _decode(
        self, item: Sequence[Any], load: Callable[[tuple[str, bytes]], Any] | None = None
    ) -> tuple[str, str, Record, Checkpoint, list[WriteEntry]]:
        raw_member, raw_record, raw_writes, blobs = item
        ns, checkpoint_id = split_member(raw_member)
        record = Record.decode(raw_record)
        checkpoint = self.serde.loads_typed(record.checkpoint)
        if not isinstance(checkpoint, Mapping):  # garbage can decode to a number
            raise UnreadableRow(f"checkpoint is not a mapping but {type(checkpoint).__name__}")
        whole = cast("Checkpoint", {**checkpoint, "channel_values": self._values(record, blobs, load)})
        return ns, checkpoint_id, record, whole, decode_writes(raw_writes)

    def _tuple(self, thread_id: str, item: Sequence[Any]) -> CheckpointTuple:
        ns, checkpoint_id, record, checkpoint, writes = self._decode(item)

        def config(cid: str) -> RunnableConfig:
            return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

        return CheckpointTuple(
            config=config(checkpoint_id),
            checkpoint=checkpoint,
            metadata=self.serde.loads_typed(record.metadata),
            parent_config=config(record.parent) if record.parent else None,
            pending_writes=[(w.task_id, w.channel, self.serde.loads_typed(w.value)) for w in writes],
        )

    # -- plans of the checkpointer contract ---------------------------------------------

    def _plan_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Plan:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = _check_name("checkpoint_ns", conf.get("checkpoint_ns") or "")
        checkpoint_id = _check_name("checkpoint_id", checkpoint["id"])
        stored = checkpoint.copy()
        # popping a TypedDict's required key: `stored` is a copy stored without its values
        values: dict[str, Any] = stored.pop("channel_values", {})  # type: ignore[misc]
        md = get_serializable_checkpoint_metadata(config, metadata)
        blobs = [
            (blob_field(ns, k, v), encode_blob(self.serde.dumps_typed(values[k])))
            for k, v in new_versions.items()
            if k in values
        ]
        record = Record(
            parent=conf.get("checkpoint_id"),
            run_id=str(md.get("run_id") or ""),
            uses_delta=uses_delta(md, values),
            refs=tuple((k, str(v)) for k, v in checkpoint["channel_versions"].items()),
            checkpoint=self.serde.dumps_typed(stored),
            metadata=self.serde.dumps_typed(md),
        )
        yield from self._index_first(thread_id)
        yield from self._acknowledged(
            self._write(
                thread_id,
                cp_mode="set",
                w_mode="put",
                checkpoints=[(member(ns, checkpoint_id), record.encode())],
                blobs=blobs,
            )
        )
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}

    def _plan_put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> Plan:
        conf = config["configurable"]
        ns = _check_name("checkpoint_ns", conf.get("checkpoint_ns") or "")
        checkpoint_id = _check_name("checkpoint_id", conf["checkpoint_id"])
        entries = [
            WriteEntry(task_id, WRITES_IDX_MAP.get(ch, idx), task_path, ch, self.serde.dumps_typed(v))
            for idx, (ch, v) in enumerate(writes)
        ]
        if entries:
            yield from self._acknowledged(
                self._write(
                    str(conf["thread_id"]),
                    cp_mode="set",
                    w_mode="put",
                    writes=[(member(ns, checkpoint_id), encode_writes(entries))],
                )
            )

    def _plan_get_tuple(self, config: RunnableConfig) -> Plan:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns") or ""
        if checkpoint_id := get_checkpoint_id(config):
            args: tuple[Any, ...] = ("ids", member(ns, checkpoint_id))
        else:
            args = ("range", f"({ns}\x01", f"[{ns}\0", 1)
        _, items = yield script("read", self._keys(thread_id), args)
        return self._tuple(thread_id, items[0]) if items else None

    def _plan_list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Plan:
        before_id = get_checkpoint_id(before) if before else None
        if config is not None:
            conf = config["configurable"]
            yield from self._plan_list_thread(
                str(conf["thread_id"]), conf.get("checkpoint_ns"), get_checkpoint_id(config),
                filter, before_id, limit,
            )
            return
        # No config: thread by thread in index order, each newest first.
        after: str | None = None
        while limit is None or limit > 0:
            live, after, done = yield from self._plan_thread_page(after)
            for thread_id in live:
                n = yield from self._plan_list_thread(thread_id, None, None, filter, before_id, limit)
                if limit is not None:
                    limit -= n
                    if limit <= 0:
                        return
            if done:
                return

    def _plan_list_thread(
        self,
        thread_id: str,
        ns: str | None,
        checkpoint_id: str | None,
        filter: dict[str, Any] | None,
        before_id: str | None,
        limit: int | None,
    ) -> Plan:
        """Emit one thread's matching tuples, newest first; return how many."""
        keys = self._keys(thread_id)
        emitted = 0
        if limit is not None and limit <= 0:
            return 0
        if ns is not None and not checkpoint_id:
            # One namespace: page the index backwards from `before` (or its end).
            high: Any = f"({member(ns, before_id)}" if before_id else f"({ns}\x01"
            while True:
                scanned, items = yield script("read", keys, ("range", high, f"[{ns}\0", PAGE))
                emitted = yield from self._emit_matching(thread_id, items, filter, emitted, limit)
                if scanned < PAGE or not items or emitted == limit:
                    return emitted
                high = b"(" + items[-1][0]
        # Across namespaces (or one id): newest id first, then by namespace.
        raw = yield command("ZRANGE", keys[0], 0, -1)
        found = [split_member(m) for m in raw]
        found = [
            (n, c)
            for n, c in found
            if (ns is None or n == ns)
            and (not checkpoint_id or c == checkpoint_id)
            and (not before_id or c < before_id)
        ]
        found.sort(key=lambda nc: nc[0])
        found.sort(key=lambda nc: nc[1], reverse=True)
        for page in chunks(found, PAGE):
            _, items = yield script("read", keys, ("ids", *(member(n, c) for n, c in page)))
            emitted = yield from self._emit_matching(thread_id, items, filter, emitted, limit)
            if emitted == limit:
                break
        return emitted

    def _emit_matching(
        self, thread_id: str, items: Sequence[Any], filter: dict[str, Any] | None, emitted: int, limit: int | None
    ) -> Plan:
        """Emit the tuples of `items` whose metadata matches, until `limit` in all; returns
        how many were emitted in all."""
        for item in items:
            tup = self._tuple(thread_id, item)
            if matches(tup.metadata, filter):
                yield Emit((tup,))
                emitted += 1
                if emitted == limit:
                    break
        return emitted

    def _plan_delete_thread(self, thread_id: str) -> Plan:
        thread_id = str(thread_id)
        yield script("delete", self._script_keys(thread_id), (thread_id,))
        if self.cluster:  # data first: a crash in between leaves only a stale index entry
            yield script("index", self._index_keys, ("remove", thread_id))

    def _plan_delta_history(self, config: RunnableConfig, channels: Sequence[str]) -> Plan:
        """InMemorySaver's walk, run server-side in one script call."""
        if not channels:
            return {}
        conf = config["configurable"]
        ns = conf.get("checkpoint_ns") or ""
        checkpoint_id = get_checkpoint_id(config) or ""
        chain = yield script("history", self._keys(str(conf["thread_id"])), (ns, checkpoint_id, *channels))
        collected: dict[str, list[Any]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        for _, raw_writes, raw_seeds in chain:
            if not remaining:
                break
            found = {
                ch.decode(): self.serde.loads_typed(decode_blob(blob))
                for ch, blob in pairs(raw_seeds)
                if ch.decode() in remaining
            }
            for w in reversed(decode_writes(raw_writes)):
                if w.channel in remaining:
                    collected[w.channel].append((w.task_id, w.channel, self.serde.loads_typed(w.value)))
            for ch, value in found.items():
                seeds[ch] = value
                remaining.discard(ch)
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[ch]))}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result

    # -- versions -----------------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The same format as InMemorySaver and PostgresSaver: 32-digit counter + random."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

