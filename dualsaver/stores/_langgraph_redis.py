"""Native access to the official LangGraph Redis saver's own keys (langgraph-checkpoint-redis
`RedisSaver` / `AsyncRedisSaver`), so backfill, check and repair are exact and fast.

The layout, as the saver (0.5) writes it (RedisJSON documents, indexed by RediSearch):

    checkpoint:{thread}:{ns}:{id}                 JSON: thread_id, run_id, checkpoint_ns,
                                                  checkpoint_id, parent_checkpoint_id,
                                                  checkpoint_ts, checkpoint (channel values
                                                  inline, LangChain objects as lc envelopes),
                                                  metadata (a JSON string), has_writes,
                                                  source, step
    checkpoint_write:{thread}:{ns}:{id}:{task}:{idx}  JSON: ..., task_id, task_path, idx,
                                                  channel, type, blob (base64)
    write_keys_zset:{thread}:{ns}:{id}            zset of that checkpoint's write keys; the
                                                  saver loads pending writes from it
    checkpoint_latest:{thread}:{ns}               the key of the namespace's latest checkpoint

An empty thread id or namespace is stored as a sentinel (``00000000-…`` / ``__empty__``), and
``default_ttl`` (minutes) is a per-key TTL. Prefixes follow the saver's `checkpoint_prefix` and
`checkpoint_write_prefix`.

Reading asks the indexes (`FT.AGGREGATE` for thread ids, `FT.SEARCH` for one thread's
documents, two queries a thread) and keeps only documents whose thread id matches exactly
(tag search ignores case). A thread id holding the tag separator ``,`` cannot be found by
tag search (the saver itself cannot list it either): it is read by SCAN instead. Each
checkpoint's remaining TTL rides along as `StoredCheckpoint.expires_at`.

Writing builds each document with the saver's own encoders (`_dump_checkpoint`,
`_dump_metadata`, its serializer), so a copy holds what the saver's `put` / `put_writes`
would have stored, and runs one Lua script per checkpoint: writes, registry, checkpoint
and latest pointer in one atomic step, every document inserted only if absent (``NX``), the
pointer moved only forward. A copied checkpoint keeps the source's expiry when it had one,
else gets the saver's `default_ttl`, as `put` would. Each write's registry score is its
position in its `put_writes` call: its idx, and 0 for a special write (alone in its call).

Every operation is a plan (see `dualsaver.sansio`) over the target "redis", carried out on
the saver's own client by dualsaver's Redis executors (`RedisIo` / `AsyncRedisIo`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import orjson
from langgraph.checkpoint.redis.key_registry import CheckpointKeyRegistry
from langgraph.checkpoint.redis.util import (
    from_storage_safe_id,
    from_storage_safe_str,
    to_storage_safe_id,
    to_storage_safe_str,
)
from redisvl.query.filter import Tag

from dualsaver.redis import AsyncRedisIo, RedisIo
from dualsaver.redis.ops import chunks, command, pipeline, script
from dualsaver.sansio import AsyncTargets, Emit, Plan, Targets, arun, astream, run, stream
from dualsaver.errors import LossyValue
from dualsaver.stores.faithful import NON_FINITE, NUL, SEARCH_SYNTAX, refuse, search_breaks
from dualsaver.stores.native import StoredCheckpoint, StoredWrite, ThreadItem, in_write_order, unreadable

LG_NON_FINITE = "langgraph-redis.json-non-finite"  # the preflight's rule ids (dualsaver.preflight.rules)
LG_NUL = "langgraph-redis.json-nul"
LG_SEARCH = "langgraph-redis.search-syntax"
SEARCH_PAGE = 500  # documents per FT.SEARCH round trip
GROUP_PAGE = 1000  # thread ids per FT.AGGREGATE cursor read
WRITE_BATCH = 100  # checkpoints per pipeline of copy scripts
DELETE_CHUNK = 500  # keys per DEL
TAG_SEPARATOR = ","  # the saver's tag fields keep RediSearch's default separator
# RediSearch's default query timeout (500 ms) answers with *partial* results when it runs
# out (ON_TIMEOUT return): a reader that must see every document asks for none.
NO_TIMEOUT = ("TIMEOUT", 0)

# KEYS: checkpoint, latest pointer, write registry, then one key per write.
# ARGV: checkpoint JSON, expire-at (epoch ms, 0: never), then (write JSON, score) pairs.
COPY_SCRIPT = """
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local at = tonumber(ARGV[2])
local added = 0
for i = 4, #KEYS do
  local j = 2 * (i - 3) + 1
  if redis.call('JSON.SET', KEYS[i], '$', ARGV[j], 'NX') then
    added = added + 1
    if at > 0 then redis.call('PEXPIREAT', KEYS[i], at) end
  end
  redis.call('ZADD', KEYS[3], 'NX', ARGV[j + 1], KEYS[i])
end
if #KEYS > 3 and at > 0 then redis.call('PEXPIREAT', KEYS[3], at) end
local created = redis.call('JSON.SET', KEYS[1], '$', ARGV[1], 'NX')
if created then
  if at > 0 then redis.call('PEXPIREAT', KEYS[1], at) end
elseif added > 0 then
  redis.call('JSON.SET', KEYS[1], '$.has_writes', 'true')
end
local current = redis.call('GET', KEYS[2])
if (not current) or before(current, KEYS[1]) then
  redis.call('SET', KEYS[2], KEYS[1])
  if at > 0 then redis.call('PEXPIREAT', KEYS[2], at) end
end
return {created and 1 or 0, added}
"""
SCRIPTS = {"copy": COPY_SCRIPT}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _json(reply: Any) -> Any:
    """A JSON reply as Python (redis-py may have parsed it already)."""
    return orjson.loads(reply) if isinstance(reply, (bytes, str)) else reply


def _unbytes(value: Any) -> Any:
    """The saver's ``{"__bytes__": base64}`` markers (bytes inside a checkpoint) as bytes."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("__bytes__"), str):
            return base64.b64decode(value["__bytes__"])
        return {k: _unbytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unbytes(v) for v in value]
    return value


def _epoch_ms(checkpoint_id: str, checkpoint: Any) -> float:
    """`checkpoint_ts` as `put` computes it (a ULID's time), else the checkpoint's own `ts`
    (when the saver would have used "now", the original put's time is the faithful value)."""
    try:
        from ulid import ULID

        return float(ULID.from_str(checkpoint_id).timestamp)
    except Exception:
        pass
    try:
        return dt.datetime.fromisoformat(str(checkpoint["ts"])).timestamp() * 1000
    except (KeyError, TypeError, ValueError):
        return time.time() * 1000


def _search_rows(reply: Any) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """An FT.SEARCH reply (RESP2 list or RESP3 map) as (total, [(key, fields)])."""
    if isinstance(reply, dict):  # RESP3
        rows = [
            (_text(r["id"]), {_text(k): v for k, v in (r.get("extra_attributes") or {}).items()})
            for r in reply.get("results", [])
        ]
        return int(reply.get("total_results", len(rows))), rows
    total, rest = int(reply[0]), reply[1:]
    rows = []
    for key, fields in zip(rest[::2], rest[1::2]):
        rows.append((_text(key), {_text(k): v for k, v in zip(fields[::2], fields[1::2])}))
    return total, rows


class Layout:
    """Keys, queries and documents of one official saver; no I/O."""

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self.serde = saver.serde
        self.checkpoint_index = saver._checkpoint_prefix
        self.writes_index = saver._checkpoint_write_prefix
        minutes = (saver.ttl_config or {}).get("default_ttl")
        self.ttl_ms = int(minutes * 60_000) if minutes and minutes > 0 else 0

    # -- queries ------------------------------------------------------------------------

    def thread_query(self, thread_id: str) -> str:
        return str(Tag("thread_id") == to_storage_safe_id(thread_id))

    def scan_pattern(self, prefix: str, thread_id: str) -> str:
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in to_storage_safe_id(thread_id))
        return f"{prefix}:{escaped}:*"

    def owns(self, doc: dict[str, Any], thread_id: str) -> bool:
        return doc.get("thread_id") == to_storage_safe_id(thread_id)

    # -- documents -> records -----------------------------------------------------------

    def revive(self, value: Any) -> Any:
        """A stored JSON value as the application's objects (LangChain messages, Sends,
        Interrupts, sets, bytes), by the saver's own serializer."""
        return self.serde._revive_if_needed(_unbytes(value))

    def decode(self, thread_id: str, doc: dict[str, Any], writes: Sequence[dict[str, Any]],
        expires_at: float | None) -> ThreadItem:
        ns = from_storage_safe_str(str(doc.get("checkpoint_ns", "")))
        checkpoint_id = from_storage_safe_id(str(doc.get("checkpoint_id", "")))
        try:
            stored = dict(doc["checkpoint"])
            stored.pop("type", None)  # the saver's storage tag, not part of the checkpoint
            if isinstance(stored.get("v"), int) and stored["v"] >= 4:
                stored.pop("pending_sends", None)  # not in format v4: the saver adds [] to all
            metadata = doc.get("metadata") or "{}"
            parent = doc.get("parent_checkpoint_id") or None
            decoded = [self.decode_write(w) for w in writes]
            return StoredCheckpoint(
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id=checkpoint_id,
                parent_checkpoint_id=from_storage_safe_id(parent) if parent else None,
                checkpoint=self.revive(stored),
                metadata=self.revive(orjson.loads(metadata) if isinstance(metadata, str) else metadata),
                writes=in_write_order(decoded),
                expires_at=expires_at,
            )
        except Exception as exc:  # a document that does not load is reported, never a crash
            return unreadable(thread_id, ns, checkpoint_id, exc)

    def decode_write(self, doc: dict[str, Any]) -> StoredWrite:
        value = self.serde.loads_typed((doc["type"], self.saver._decode_blob(doc["blob"])))
        return StoredWrite(str(doc["task_id"]), str(doc.get("task_path") or ""), int(doc["idx"]),
            str(doc["channel"]), value)

    # -- records -> documents -----------------------------------------------------------

    def checkpoint_doc(self, item: StoredCheckpoint) -> dict[str, Any]:
        """The document `put` stores for this checkpoint (with `has_writes` as its writes
        leave it)."""
        metadata = item.metadata or {}
        run_id = metadata.get("run_id")
        doc: dict[str, Any] = {
            "thread_id": to_storage_safe_id(item.thread_id),
            "run_id": to_storage_safe_id(run_id) if run_id else "",
            "checkpoint_ns": to_storage_safe_str(item.checkpoint_ns),
            "checkpoint_id": to_storage_safe_id(item.checkpoint_id),
            "parent_checkpoint_id": to_storage_safe_id(item.parent_checkpoint_id) if item.parent_checkpoint_id else "",
            "checkpoint_ts": _epoch_ms(item.checkpoint_id, item.checkpoint),
            "checkpoint": self.saver._dump_checkpoint(dict(item.checkpoint)),
            "metadata": self.saver._dump_metadata(metadata),
            "has_writes": bool(item.writes),
        }
        if "source" in metadata and "step" in metadata:
            doc["source"], doc["step"] = metadata["source"], metadata["step"]
        return doc

    def write_doc(self, item: StoredCheckpoint, w: StoredWrite) -> dict[str, Any]:
        """The document `put_writes` stores for this write."""
        type_, blob = self.serde.dumps_typed(w.value)
        return {
            "thread_id": to_storage_safe_id(item.thread_id),
            "checkpoint_ns": to_storage_safe_str(item.checkpoint_ns),
            "checkpoint_id": to_storage_safe_id(item.checkpoint_id),
            "task_id": w.task_id,
            "task_path": w.task_path,
            "idx": w.idx,
            "channel": w.channel,
            "type": type_,
            "blob": self.saver._encode_blob(blob),
        }

    def registry_key(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return CheckpointKeyRegistry.make_write_keys_zset_key(thread_id, ns, checkpoint_id)

    def copy_call(self, item: StoredCheckpoint, now_ms: int) -> Any:
        """The copy script for one checkpoint and its writes."""
        saver, t, ns, cid = self.saver, item.thread_id, item.checkpoint_ns, item.checkpoint_id
        if item.expires_at is not None:
            at = int(item.expires_at * 1000)
        else:
            at = now_ms + self.ttl_ms if self.ttl_ms else 0
        keys = [
            saver._make_redis_checkpoint_key(t, ns, cid),
            saver._make_redis_checkpoint_latest_key(t, ns),
            self.registry_key(t, ns, cid),
        ]
        args: list[Any] = [json.dumps(self.checkpoint_doc(item)), max(at, 0)]
        for w in item.writes:
            keys.append(saver._make_redis_checkpoint_writes_key(t, ns, cid, w.task_id, w.idx))
            args += [json.dumps(self.write_doc(item, w)), w.idx if w.idx >= 0 else 0]
        return script("copy", keys, args)


def refuse_lossy(item: StoredCheckpoint, allowed: Collection[str]) -> None:
    """`LossyValue` for what the saver would store changed or lose: a thread id its search
    cannot find (a NUL is one), NaN and Infinity (orjson writes null) in the metadata or the
    channel values, a NUL in a metadata string (stripped)."""
    target = "the official Redis saver's JSON"
    if SEARCH_SYNTAX not in allowed and search_breaks(item.thread_id):
        raise LossyValue(f"thread id {item.thread_id!r}: the official Redis saver's tag search cannot find it",
                         rule=LG_SEARCH, rule_class=SEARCH_SYNTAX)
    refuse(item.metadata, NON_FINITE, "metadata", LG_NON_FINITE, target, allowed)
    refuse(item.metadata, NUL, "metadata", LG_NUL, target, allowed)
    refuse(item.checkpoint.get("channel_values"), NON_FINITE, "channel values", LG_NON_FINITE, target, allowed)


# --------------------------------------------------------------------------- plans


def _documents(layout: Layout, index: str, prefix: str, thread_id: str) -> Plan[list[tuple[str, dict]]]:
    """Every document of `index` whose thread is exactly `thread_id`: (key, document)."""
    found: list[tuple[str, dict]] = []
    if TAG_SEPARATOR in to_storage_safe_id(thread_id):
        keys = yield from _scan(layout.scan_pattern(prefix, thread_id))
        for page in chunks(keys, SEARCH_PAGE):
            docs = yield command("JSON.MGET", *page, "$")
            found += [(k, _json(d)[0]) for k, d in zip(page, docs) if d is not None]
    else:
        found = yield from _search(index, layout.thread_query(thread_id))
    return [(key, doc) for key, doc in found if layout.owns(doc, thread_id)]


def _search(index: str, query: str) -> Plan[list[tuple[str, dict]]]:
    """Every document of `index` matching `query`: (key, document), a page at a time."""
    found: list[tuple[str, dict]] = []
    offset = 0
    while True:
        reply = yield command("FT.SEARCH", index, query, "LIMIT", offset, SEARCH_PAGE, *NO_TIMEOUT, "DIALECT", 2)
        total, rows = _search_rows(reply)
        found += [(_text(key), _json(fields["$"])) for key, fields in rows if "$" in fields]
        offset += SEARCH_PAGE
        if offset >= total or not rows:
            return found


def _scan(pattern: str) -> Plan[list[str]]:
    cursor, keys = "0", []
    while True:
        cursor, page = yield command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", "ReJSON-RL")
        keys += [_text(k) for k in page]
        if _text(cursor) == "0":
            return sorted(set(keys))


def plan_thread_ids(layout: Layout) -> Plan[None]:
    """Every thread id, ascending: the groups of the checkpoint index's thread_id tag."""
    ids: set[str] = set()
    reply, cursor = yield command(
        "FT.AGGREGATE", layout.checkpoint_index, "*", "GROUPBY", 1, "@thread_id",
        "WITHCURSOR", "COUNT", GROUP_PAGE, *NO_TIMEOUT, "DIALECT", 2,
    )
    while True:
        for row in reply[1:]:
            fields = dict(zip(map(_text, row[::2]), row[1::2]))
            if fields.get("thread_id") is not None:
                ids.add(from_storage_safe_id(_text(fields["thread_id"])))
        if not int(cursor):
            break
        reply, cursor = yield command("FT.CURSOR", "READ", layout.checkpoint_index, cursor, "COUNT", GROUP_PAGE)
    yield Emit(sorted(ids))


def plan_read_thread(layout: Layout, thread_id: str) -> Plan[None]:
    checkpoints = yield from _documents(layout, layout.checkpoint_index, layout.checkpoint_index, thread_id)
    writes = yield from _documents(layout, layout.writes_index, layout.writes_index, thread_id)
    ttls = (yield pipeline(command("PTTL", key) for key, _ in checkpoints)) if checkpoints else []
    now = time.time()
    by_checkpoint: dict[tuple[Any, Any], list[dict]] = defaultdict(list)
    for _, w in writes:
        by_checkpoint[(w.get("checkpoint_ns"), w.get("checkpoint_id"))].append(w)
    items = [
        layout.decode(
            thread_id,
            doc,
            by_checkpoint.get((doc.get("checkpoint_ns"), doc.get("checkpoint_id")), ()),
            now + int(ttl) / 1000 if int(ttl) > 0 else None,
        )
        for (_, doc), ttl in zip(checkpoints, ttls)
    ]
    yield Emit(sorted(items, key=lambda i: (i.checkpoint_ns, i.checkpoint_id)))


def plan_checkpoint_keys(layout: Layout, thread_id: str) -> Plan[set[tuple[str, str]]]:
    docs = yield from _documents(layout, layout.checkpoint_index, layout.checkpoint_index, thread_id)
    return {
        (from_storage_safe_str(str(d.get("checkpoint_ns", ""))), from_storage_safe_id(str(d.get("checkpoint_id", ""))))
        for _, d in docs
    }


def plan_write(layout: Layout, items: Iterable[StoredCheckpoint]) -> Plan[tuple[int, int]]:
    added = writes = 0
    source = iter(items)
    while batch := list(islice(source, WRITE_BATCH)):
        now_ms = int(time.time() * 1000)
        replies = yield pipeline(layout.copy_call(item, now_ms) for item in batch)
        for created, copied in replies:
            added += int(created)
            writes += int(copied)
    return added, writes


def plan_delete_thread(layout: Layout, thread_id: str) -> Plan[None]:
    """The thread's checkpoints, writes, write registries and latest pointers."""
    saver = layout.saver
    checkpoints = yield from _documents(layout, layout.checkpoint_index, layout.checkpoint_index, thread_id)
    writes = yield from _documents(layout, layout.writes_index, layout.writes_index, thread_id)
    keys = {key for key, _ in checkpoints} | {key for key, _ in writes}
    for _, doc in checkpoints + writes:
        ns = from_storage_safe_str(str(doc.get("checkpoint_ns", "")))
        cid = from_storage_safe_id(str(doc.get("checkpoint_id", "")))
        keys.add(layout.registry_key(thread_id, ns, cid))
        keys.add(saver._make_redis_checkpoint_latest_key(thread_id, ns))
    for chunk in chunks(sorted(keys), DELETE_CHUNK):
        yield command("DEL", *chunk)


def _doc_key(doc: dict[str, Any]) -> tuple[str, str]:
    """A document's (namespace, checkpoint id) as the application wrote them."""
    ns = from_storage_safe_str(str(doc.get("checkpoint_ns", "")))
    return ns, from_storage_safe_id(str(doc.get("checkpoint_id", "")))


def plan_run_checkpoints(layout: Layout, run_ids: Sequence[str]) -> Plan[dict[str, list[tuple[str, str]]]]:
    """(namespace, id) of each checkpoint of these runs, by thread: the index's run_id tag."""
    if not run_ids:
        return {}
    query = str(Tag("run_id") == [to_storage_safe_id(r) for r in run_ids])
    found: dict[str, list[tuple[str, str]]] = {}
    for _, doc in (yield from _search(layout.checkpoint_index, query)):
        if from_storage_safe_id(str(doc.get("run_id", ""))) in run_ids:  # a tag match is not exact
            thread_id = from_storage_safe_id(str(doc.get("thread_id", "")))
            found.setdefault(thread_id, []).append(_doc_key(doc))
    return found


def plan_delete_checkpoints(layout: Layout, thread_id: str, keys: Sequence[tuple[str, str]]) -> Plan[None]:
    """The checkpoints named, their writes and write registries; a namespace's latest pointer
    that named one of them is moved to the newest checkpoint left (or removed), as `put`
    would have left it."""
    saver, doomed = layout.saver, set(keys)
    checkpoints = yield from _documents(layout, layout.checkpoint_index, layout.checkpoint_index, thread_id)
    writes = yield from _documents(layout, layout.writes_index, layout.writes_index, thread_id)
    gone = {key for key, doc in checkpoints if _doc_key(doc) in doomed}
    deleted = gone | {key for key, doc in writes if _doc_key(doc) in doomed}
    deleted |= {layout.registry_key(thread_id, ns, cid) for ns, cid in doomed}
    for chunk in chunks(sorted(deleted), DELETE_CHUNK):
        yield command("DEL", *chunk)
    newest: dict[str, tuple[str, str]] = {}  # ns -> (checkpoint id, key) of the newest left
    for key, doc in checkpoints:
        ns, cid = _doc_key(doc)
        if key not in gone and (ns not in newest or cid > newest[ns][0]):
            newest[ns] = (cid, key)
    for ns in sorted({ns for ns, _ in doomed}):
        pointer = saver._make_redis_checkpoint_latest_key(thread_id, ns)
        if _text((yield command("GET", pointer)) or "") in gone:
            yield command("SET", pointer, newest[ns][1], "KEEPTTL") if ns in newest else command("DEL", pointer)


# --------------------------------------------------------------------------- shells


class LangGraphRedisNativeStore:
    """`NativeStore` over the official `RedisSaver`, and `AsyncNativeStore` (the ``a`` forms)
    over its `AsyncRedisSaver`: one set of plans, run blocking or awaited."""

    exact = True

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self.layout = Layout(saver)
        from redis.asyncio import Redis as AsyncRedis

        # dualsaver's Redis executors, with this module's script; one server (or Sentinel)
        if isinstance(saver._redis, AsyncRedis):
            self._io: Any = AsyncTargets(redis=AsyncRedisIo(saver._redis, False, SCRIPTS, binary=False))
        else:
            self._io = Targets(redis=RedisIo(saver._redis, False, SCRIPTS, binary=False))

    allow_lossy: Collection[str] = ()  # rule classes the writer may convert (see dualsaver.stores.faithful)

    def prepare_write(self, items: Iterable[StoredCheckpoint]) -> list[StoredCheckpoint]:
        """The items, each checked for what the saver's JSON would change (encoded per
        checkpoint as the script calls are built)."""
        items = list(items)
        for item in items:
            refuse_lossy(item, self.allow_lossy)
        return items

    def thread_ids(self) -> Iterator[str]:
        return stream(plan_thread_ids(self.layout), self._io)

    def read_thread(self, thread_id: str) -> Iterator[ThreadItem]:
        return stream(plan_read_thread(self.layout, thread_id), self._io)

    def checkpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return run(plan_checkpoint_keys(self.layout, thread_id), self._io)

    def write_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return run(plan_write(self.layout, items), self._io)

    def write_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return self.write_prepared(self.prepare_write(items))

    def delete_thread(self, thread_id: str) -> None:
        run(plan_delete_thread(self.layout, thread_id), self._io)

    def athread_ids(self) -> AsyncIterator[str]:
        return astream(plan_thread_ids(self.layout), self._io)

    def aread_thread(self, thread_id: str) -> AsyncIterator[ThreadItem]:
        return astream(plan_read_thread(self.layout, thread_id), self._io)

    async def acheckpoint_keys(self, thread_id: str) -> set[tuple[str, str]]:
        return await arun(plan_checkpoint_keys(self.layout, thread_id), self._io)

    async def awrite_prepared(self, items: list[StoredCheckpoint]) -> tuple[int, int]:
        return await arun(plan_write(self.layout, items), self._io)

    async def awrite_checkpoints(self, items: Iterable[StoredCheckpoint]) -> tuple[int, int]:
        return await self.awrite_prepared(self.prepare_write(items))

    async def adelete_thread(self, thread_id: str) -> None:
        await arun(plan_delete_thread(self.layout, thread_id), self._io)

    def run_checkpoints(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        return run(plan_run_checkpoints(self.layout, list(run_ids)), self._io)

    def delete_checkpoints(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> None:
        run(plan_delete_checkpoints(self.layout, thread_id, keys), self._io)

    async def arun_checkpoints(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        return await arun(plan_run_checkpoints(self.layout, list(run_ids)), self._io)

    async def adelete_checkpoints(self, thread_id: str, keys: Sequence[tuple[str, str]]) -> None:
        await arun(plan_delete_checkpoints(self.layout, thread_id, keys), self._io)
