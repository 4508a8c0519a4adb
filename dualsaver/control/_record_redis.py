"""The control store in Redis: hashes, sets and a list under one hash tag, so a Redis Cluster
keeps them on one node and a Lua script may change several at once. Created on first use;
the layout's version is claimed atomically in `...:schema` (SET NX).

    dualsaver:{name}:phase / :history / :replicas / :status   the phase record
    dualsaver:{name}:journal        hash  id -> entry (JSON);  :journal:seq  the last id
    dualsaver:{name}:journal:open   zset  ids not repaired yet (score: id)
    dualsaver:{name}:journal:deletes hash "store NUL thread" (or "store NUL item NUL ns NUL key")
                                     -> deletes not repaired yet
    dualsaver:{name}:jobs           hash  job -> meta, counters, started_at, updated_at (JSON)
    dualsaver:{name}:done:<job>     set   threads the job finished
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from dualsaver.control._record_base import (
    DEFAULT_TIMEOUT,
    ControlStore,
    PhaseState,
    ReplicaSeen,
    Transition,
    _state,
    _text,
)
from dualsaver.control.journal import ITEM_OPERATIONS, JournalEntry, Stale, item_at, item_entry_fields
from dualsaver.control.phase import Phase
from dualsaver.errors import ConcurrentChange, RecordUnavailable

# Compare-and-set: the version must still be the expected one; then the hash and the
# history change together (a script runs atomically, and every key shares a hash tag).
_SET_PHASE = """
local v = redis.call('HGET', KEYS[1], 'version') or '0'
if v ~= ARGV[1] then return {0, v, redis.call('HGET', KEYS[1], 'phase') or ''} end
redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'version', ARGV[3], 'changed_at', ARGV[4],
           'changed_by', ARGV[5], 'reason', ARGV[6], 'forced', ARGV[7])
redis.call('RPUSH', KEYS[2], ARGV[8])
return {1, ARGV[3], ARGV[2]}
"""


SCHEMA_VERSION = 2

# Journal entries get ids from one counter; an open entry sits in a sorted set; a delete
# also counts in a hash, so "did this store miss a delete of this thread" is one HGET.
# The field of `...:journal:deletes` a delete entry counts under: "store NUL thread", or for a
# long-term store item "store NUL item NUL namespace-json NUL key" (journal.item_entry_fields).
_DELETED_KEY = """
local function deleted_key(entry)
  if entry['operation'] == 'delete_thread' and entry['thread_id'] then
    return entry['store'] .. '\\0' .. entry['thread_id']
  end
  if entry['operation'] == 'store.delete' then
    return entry['store'] .. '\\0item\\0' .. entry['checkpoint_ns'] .. '\\0' .. entry['checkpoint_id']
  end
  return nil
end
"""

# An open entry naming a thread or an item also counts in its store's hash of what it missed
# (`...:journal:stale:old` / `:new`; field "thread NUL id" or "item NUL namespace-json NUL
# key" -> open entries), so "what did new miss a write of" is one HKEYS however long the
# journal. The index says what it has counted (`...:journal:stale:index`: the journal's
# `seq` and how many entries were open), and each add and claim keeps that up to date.
# An add or a claim that did not (a replica running an older dualsaver, whose scripts keep
# no index) leaves it behind the journal, so the next ask counts every open entry anew
# (`_STALE`); so does the first ask of a journal written before the index existed.
_ITEM_OPERATIONS = "{" + ", ".join(f"['{op}'] = true" for op in sorted(ITEM_OPERATIONS)) + "}"
_STALE_HASH = """
local ITEM_OPERATIONS = """ + _ITEM_OPERATIONS + """
local function stale_hash(entry, old_key, new_key)
  local field
  if entry['thread_id'] ~= nil and entry['thread_id'] ~= cjson.null then
    field = 'thread\\0' .. entry['thread_id']
  elseif ITEM_OPERATIONS[entry['operation']] and type(entry['checkpoint_ns']) == 'string'
      and type(entry['checkpoint_id']) == 'string' then
    field = 'item\\0' .. entry['checkpoint_ns'] .. '\\0' .. entry['checkpoint_id']
  else
    return nil
  end
  if entry['store'] == 'old' then return old_key, field end
  if entry['store'] == 'new' then return new_key, field end
  return nil
end
"""

# KEYS: journal, seq, open, deletes, stale:old, stale:new, stale:index
_JOURNAL_ADD = _DELETED_KEY + _STALE_HASH + """
local first = redis.call('INCRBY', KEYS[2], #ARGV) - #ARGV
if tonumber(redis.call('HGET', KEYS[7], 'seq')) == first then  -- the index counted every entry before these
  redis.call('HSET', KEYS[7], 'seq', first + #ARGV)
  redis.call('HINCRBY', KEYS[7], 'open', #ARGV)
end
for i, raw in ipairs(ARGV) do
  local id = first + i
  local entry = cjson.decode(raw)
  entry['id'] = id
  redis.call('HSET', KEYS[1], id, cjson.encode(entry))
  redis.call('ZADD', KEYS[3], id, id)
  local deleted = deleted_key(entry)
  if deleted then
    redis.call('HINCRBY', KEYS[4], deleted, 1)
  end
  local stale, field = stale_hash(entry, KEYS[5], KEYS[6])
  if stale then
    redis.call('HINCRBY', stale, field, 1)
  end
end
return first
"""

# A claim removes the id from the open set: ZREM answers 1 to one caller only.
_JOURNAL_CLAIM = _DELETED_KEY + _STALE_HASH + """
local claimed = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then
    claimed = claimed + 1
    local entry = cjson.decode(redis.call('HGET', KEYS[1], ARGV[i]))
    entry['repaired_at'] = tonumber(ARGV[1])
    redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(entry))
    local deleted = deleted_key(entry)
    if deleted then
      redis.call('HINCRBY', KEYS[4], deleted, -1)
    end
    local stale, field = stale_hash(entry, KEYS[5], KEYS[6])
    if stale and redis.call('HINCRBY', stale, field, -1) <= 0 then
      redis.call('HDEL', stale, field)
    end
  end
end
if claimed > 0 and redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('HINCRBY', KEYS[7], 'open', -claimed)
end
return claimed
"""

# KEYS: journal, open, stale:old, stale:new, stale:index, seq, stale:built (the index's
# marker before it counted: dropped); ARGV[1]: the store. An index behind the journal (see
# above) counts every open entry anew, from scratch, so nothing twice.
_STALE = _STALE_HASH + """
local seq = tonumber(redis.call('GET', KEYS[6])) or 0
local open = redis.call('ZCARD', KEYS[2])
local counted = redis.call('HMGET', KEYS[5], 'seq', 'open')
if tonumber(counted[1]) ~= seq or tonumber(counted[2]) ~= open then
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[7])
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local raw = redis.call('HGET', KEYS[1], id)
    if raw then
      local stale, field = stale_hash(cjson.decode(raw), KEYS[3], KEYS[4])
      if stale then
        redis.call('HINCRBY', stale, field, 1)
      end
    end
  end
  redis.call('HSET', KEYS[5], 'seq', seq, 'open', open)
end
if ARGV[1] == 'old' then return redis.call('HKEYS', KEYS[3]) end
if ARGV[1] == 'new' then return redis.call('HKEYS', KEYS[4]) end
return {}
"""


class RedisControlStore(ControlStore):
    """The record under `dualsaver:{name}:*`: standalone Redis or Redis Cluster."""

    def __init__(self, url: str, name: str = "default", timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, name, timeout)
        from dualsaver.redis.url import parse_redis_url

        try:
            self._target = parse_redis_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        except ValueError as exc:
            raise RecordUnavailable(self.describe(exc)) from None
        tag = "{" + name + "}"
        self.keys = {
            "phase": f"dualsaver:{tag}:phase",
            "history": f"dualsaver:{tag}:history",
            "replicas": f"dualsaver:{tag}:replicas",
            "status": f"dualsaver:{tag}:status",
            "schema": f"dualsaver:{tag}:schema",
            "journal": f"dualsaver:{tag}:journal",
            "seq": f"dualsaver:{tag}:journal:seq",
            "open": f"dualsaver:{tag}:journal:open",
            "deletes": f"dualsaver:{tag}:journal:deletes",
            "stale_old": f"dualsaver:{tag}:journal:stale:old",
            "stale_new": f"dualsaver:{tag}:journal:stale:new",
            "stale_index": f"dualsaver:{tag}:journal:stale:index",
            "stale_built": f"dualsaver:{tag}:journal:stale:built",  # before the index counted (dropped)
            "jobs": f"dualsaver:{tag}:jobs",
        }
        self._done_prefix = f"dualsaver:{tag}:done:"

    def _prepare(self, client: Any) -> None:
        # Nothing to create: the first writer claims the layout's version, and a store
        # written by a newer layout is refused rather than misread.
        client.set(self.keys["schema"], SCHEMA_VERSION, nx=True)
        found = int(client.get(self.keys["schema"]) or SCHEMA_VERSION)
        if found > SCHEMA_VERSION:
            raise RecordUnavailable(f"control store {self.where} has layout {found}, newer than this dualsaver's")

    def _connect(self) -> Any:
        from dualsaver.redis.url import sync_client

        return sync_client(self._target)

    def _errors(self) -> tuple[tuple[type[BaseException], ...], ...]:
        import redis
        from redis.exceptions import ClusterError, RedisClusterException

        # ClusterError: no node of the cluster answers
        unreachable = (redis.ConnectionError, redis.TimeoutError, OSError, ClusterError, RedisClusterException)
        return (), unreachable, (redis.RedisError,)

    def read(self) -> PhaseState | None:
        raw = self._run(lambda r: r.hgetall(self.keys["phase"]))
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return _state(h["phase"], h["version"], h["changed_at"], h["changed_by"], h.get("reason"),
            h.get("forced") == "1")

    def set_phase(
        self, phase: Phase, *, expected_version: int, by: str, reason: str = "", forced: bool = False
    ) -> PhaseState:
        now = time.time()
        new_version = expected_version + 1
        entry = {
            "from_phase": None,
            "to_phase": phase.value,
            "version": new_version,
            "changed_at": now,
            "changed_by": by,
            "reason": reason,
            "forced": forced,
        }
        current = self.read()
        entry["from_phase"] = previous = current.phase.value if current else None
        if (current is not None and current.version != expected_version) or (
            current is None and expected_version != 0
        ):
            raise ConcurrentChange(
                f"the phase changed meanwhile (now {previous}, version"
                f" {current.version if current else 0}); look again with `dualsaver phase show`"
            )
        args = [
            str(expected_version), phase.value, str(new_version), repr(now), by, reason,
            "1" if forced else "0", json.dumps(entry),
        ]
        ok, version, now_phase = self._run(
            lambda r: r.eval(_SET_PHASE, 2, self.keys["phase"], self.keys["history"], *args)
        )
        if int(ok) != 1:
            raise ConcurrentChange(
                f"the phase changed meanwhile (now {_text(now_phase)}, version {_text(version)});"
                " look again with `dualsaver phase show`"
            )
        return PhaseState(phase, new_version, now, by, reason, forced)

    def history(self, limit: int = 20) -> list[Transition]:
        rows = self._run(lambda r: r.lrange(self.keys["history"], -limit, -1))
        return [Transition(**json.loads(row)) for row in rows or []]

    def heartbeat(self, replica: str, phase: Phase, interval: float, journal_depth: int = 0) -> None:
        value = json.dumps({"phase": phase.value, "seen_at": time.time(), "interval": interval, "depth": journal_depth})
        self._run(lambda r: r.hset(self.keys["replicas"], replica, value))

    def forget_replica(self, replica: str) -> None:
        self._run(lambda r: r.hdel(self.keys["replicas"], replica))

    def replicas(self) -> list[ReplicaSeen]:
        raw = self._run(lambda r: r.hgetall(self.keys["replicas"])) or {}
        seen = []
        for key, value in raw.items():
            v = json.loads(value)
            seen.append(ReplicaSeen(_text(key), v["phase"], float(v["seen_at"]), float(v["interval"]),
                                    v.get("depth", 0)))
        return sorted(seen, key=lambda s: s.replica)

    def put_status(self, kind: str, value: dict[str, Any]) -> None:
        payload = json.dumps({"value": value, "recorded_at": time.time()})
        self._run(lambda r: r.hset(self.keys["status"], kind, payload))

    def get_status(self, kind: str) -> dict[str, Any] | None:
        raw = self._run(lambda r: r.hget(self.keys["status"], kind))
        return json.loads(raw)["value"] if raw else None

    def list_status(self, prefix: str) -> dict[str, dict[str, Any]]:
        raw = self._run(lambda r: r.hgetall(self.keys["status"])) or {}
        found = {_text(k): json.loads(v)["value"] for k, v in raw.items()}
        return {k: v for k, v in found.items() if k.startswith(prefix)}

    # -- the fleet's journal -------------------------------------------------------------

    def _journal_keys(self) -> list[str]:
        return [self.keys[k] for k in ("journal", "seq", "open", "deletes", "stale_old", "stale_new", "stale_index")]

    def journal_add(self, entries: Sequence[JournalEntry], replica: str) -> None:
        rows = [json.dumps({**asdict(e), "id": None, "ts": e.ts or time.time(), "replica": replica}) for e in entries]
        if rows:
            self._run(lambda r: r.eval(_JOURNAL_ADD, 7, *self._journal_keys(), *rows))

    def journal_pending(self) -> list[JournalEntry]:
        def fn(r: Any) -> list[Any]:
            ids = r.zrange(self.keys["open"], 0, -1)
            return r.hmget(self.keys["journal"], ids) if ids else []

        fields = {f.name for f in dataclasses.fields(JournalEntry)}
        entries = [json.loads(raw) for raw in self._run(fn) or () if raw]
        return [JournalEntry(**{k: v for k, v in e.items() if k in fields}) for e in entries]

    def journal_stale(self, store: str) -> Stale:
        names = ("journal", "open", "stale_old", "stale_new", "stale_index", "seq", "stale_built")
        keys = [self.keys[k] for k in names]
        fields = [f.decode() if isinstance(f, bytes) else str(f) for f in self._run(
            lambda r: r.eval(_STALE, 7, *keys, store)) or ()]
        threads, items = set(), set()
        for field in fields:
            kind, _, rest = field.partition("\0")
            if kind == "thread":
                threads.add(rest)
            elif kind == "item":
                namespace, _, key = rest.partition("\0")
                items.add(item_at(namespace, key))
        return Stale(frozenset(threads), frozenset(items))

    def journal_missed_delete(self, store: str, thread_id: str) -> bool:
        count = self._run(lambda r: r.hget(self.keys["deletes"], f"{store}\0{thread_id}"))
        return bool(count and int(count) > 0)

    def journal_missed_item_delete(self, store: str, namespace: Sequence[str], key: str) -> bool:
        at = item_entry_fields(namespace, key)
        field = f"{store}\0item\0{at['checkpoint_ns']}\0{at['checkpoint_id']}"
        count = self._run(lambda r: r.hget(self.keys["deletes"], field))
        return bool(count and int(count) > 0)

    def journal_claim(self, ids: Sequence[int], by: str) -> int:
        if not ids:
            return 0
        return int(self._run(lambda r: r.eval(_JOURNAL_CLAIM, 7, *self._journal_keys(), time.time(), *ids)))

    # -- backfill progress ---------------------------------------------------------------

    def _job(self, r: Any, job: str) -> dict[str, Any]:
        raw = r.hget(self.keys["jobs"], job)
        return json.loads(raw) if raw else {}

    def job_begin(self, job: str, meta: dict[str, Any], restart: bool) -> None:
        def fn(r: Any) -> None:
            if restart:
                r.delete(self._done_prefix + job)
            now = time.time()
            r.hset(self.keys["jobs"], job, json.dumps({"meta": meta, "counters": {}, "started_at": now,
                "updated_at": now}))

        self._run(fn)

    def job_update(self, job: str, fields: dict[str, Any]) -> None:
        def fn(r: Any) -> None:  # one writer per job (its shard runs once at a time)
            found = self._job(r, job)
            found["counters"] = {**found.get("counters", {}), **fields}
            found["updated_at"] = time.time()
            r.hset(self.keys["jobs"], job, json.dumps(found))

        self._run(fn)

    def jobs(self) -> list[dict[str, Any]]:
        def fn(r: Any) -> list[dict[str, Any]]:
            found = []
            for job, raw in r.hgetall(self.keys["jobs"]).items():
                j = json.loads(raw)
                done = r.scard(self._done_prefix + _text(job))
                found.append({"job": _text(job), **j["meta"], **j["counters"], "started_at": j["started_at"],
                              "updated_at": j["updated_at"], "threads_done": done})
            return sorted(found, key=lambda j: j["started_at"])

        return self._run(fn) or []

    def done_add(self, job: str, thread_ids: Sequence[str]) -> None:
        if thread_ids:
            self._run(lambda r: r.sadd(self._done_prefix + job, *thread_ids))

    def done_filter(self, job: str, thread_ids: Sequence[str]) -> set[str]:
        if not thread_ids:
            return set()
        flags = self._run(lambda r: r.smismember(self._done_prefix + job, list(thread_ids))) or []
        return {t for t, flag in zip(thread_ids, flags) if flag}

    def done_count(self, job: str) -> int:
        return int(self._run(lambda r: r.scard(self._done_prefix + job)) or 0)
