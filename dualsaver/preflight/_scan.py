"""The scan: every thread of the source against the rules of the target's kind, as one plan.

The source's thread ids stream once; each thread of the shard is read (natively, as the check
and the backfill read it) and its ids and values are judged row by row, so memory holds one
thread's rows at a time. Collisions need more than one thread:

- case and whitespace folds: an id whose fold differs from itself is remembered under its
  fold (few ids are); a second pass over the ids (ids only) adds the ids that are their own
  fold and equal a remembered one. Every id takes part, whatever the shard; a group is
  reported by the shard of its smallest id, so the shards' reports add up to the whole;
- `:`-joined keys: only a pair with a `:` in its thread id or namespace can share a key with
  another (see `classify.may_join`), so only those are remembered. They are known only for
  the threads read: a sharded scan finds the collisions inside its shard (a note says so);
- the empty id and the zero UUID: both ids seen, in any shard.

`PreflightRun` keeps the decisions (no I/O); `scan_plan` does the reading; `preflight` /
`apreflight` in `dualsaver.preflight` drive it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from dualsaver.control.throttle import Throttle
from dualsaver.preflight import classify as c
from dualsaver.preflight.findings import Finding, PreflightReport
from dualsaver.preflight.rules import (
    LANGGRAPH_REDIS, MSGPACK_MAX_DEPTH, ORJSON_MAX_DEPTH, POSTGRES, POSTGRES_FIELD_MAX_BYTES, REDIS,
    REDIS_VALUE_MAX_BYTES, REDISJSON_VALUE_MAX_DEPTH, SQLITE,
)
from dualsaver.sansio import END, Call, Next, Plan
from dualsaver.stores.native import StoredCheckpoint, Unreadable, in_shard

# The rule naming a lone surrogate in an id (thread, namespace, checkpoint, task, channel)
SURROGATE_ID_RULES = {POSTGRES: "postgres.surrogate", REDIS: "redis.surrogate-id",
                      LANGGRAPH_REDIS: "langgraph-redis.surrogate"}
SHARDED_JOIN_NOTE = ("sharded scan: `:`-joined key collisions (langgraph-redis.key-join) are found among the"
                     " threads of this shard only")


class PreflightRun:
    """What one scan found so far, and the state its collision rules keep."""

    def __init__(self, report: PreflightReport, *, shard: tuple[int, int] | None = None,
                 thread_ids: Iterable[str] | None = None, throttle: Throttle | None = None,
                 limits: dict[str, int] | None = None) -> None:
        self.report = report
        self.kind = report.target_kind
        self.shard = shard
        self.thread_ids = sorted(set(thread_ids)) if thread_ids is not None else None
        self.throttle = throttle
        self.limits = {"redis_bytes": REDIS_VALUE_MAX_BYTES, "postgres_bytes": POSTGRES_FIELD_MAX_BYTES,
                       **(limits or {})}
        self.folds: dict[str, dict[str, list[str]]] = {"langgraph-redis.case-fold": {},
                                                       "langgraph-redis.space-fold": {}}
        self.joins: dict[str, set[tuple[str, str]]] = {}
        self.empties: list[str] = []
        if shard is not None:
            report.shard = f"{shard[0]}/{shard[1]}"
            if self.kind == LANGGRAPH_REDIS:
                report.notes.append(SHARDED_JOIN_NOTE)

    @property
    def collisions(self) -> bool:
        return self.kind == LANGGRAPH_REDIS

    def wanted(self, thread_id: str) -> bool:
        return in_shard(thread_id, self.shard)

    # -- ids -------------------------------------------------------------------------------

    def see_id(self, thread_id: str) -> None:
        """Pass one, every id: remember those whose fold differs, and the empty ids."""
        if not self.collisions:
            return
        for rule, fold in (("langgraph-redis.case-fold", c.case_fold), ("langgraph-redis.space-fold", c.space_fold)):
            if (folded := fold(thread_id)) != thread_id:
                self.folds[rule].setdefault(folded, []).append(thread_id)
        if thread_id in ("", c.ZERO_UUID):
            self.empties.append(thread_id)

    def see_id_again(self, thread_id: str) -> None:
        """Pass two: an id that is its own fold joins the group of the ids that fold to it."""
        for rule, fold in (("langgraph-redis.case-fold", c.case_fold), ("langgraph-redis.space-fold", c.space_fold)):
            groups = self.folds[rule]
            if fold(thread_id) == thread_id and thread_id in groups:
                groups[thread_id].append(thread_id)

    def check_thread_id(self, thread_id: str) -> None:
        add = self.report.add
        if self.kind == LANGGRAPH_REDIS:
            if c.search_breaks(thread_id):
                add(Finding("langgraph-redis.search-syntax", thread_id, what="its tag search cannot find it"))
            if c.has_nul(thread_id):
                add(Finding("langgraph-redis.nul-id", thread_id, what="NUL in the thread id"))
        elif self.kind == POSTGRES and c.has_nul(thread_id):
            add(Finding("postgres.nul", thread_id, what="NUL in the thread id"))
        if c.has_surrogate(thread_id) and (rule := SURROGATE_ID_RULES.get(self.kind)):
            add(Finding(rule, thread_id, what="a lone surrogate in the thread id"))

    # -- rows ------------------------------------------------------------------------------

    def check_thread(self, thread_id: str, items: list[Any]) -> None:
        """Every row of one thread (read whole: a thread is the unit the check reads too)."""
        namespaces: set[str] = set()
        for item in items:
            if isinstance(item, Unreadable):
                self.report.unreadable += 1
                continue
            self.report.checkpoints_scanned += 1
            namespaces.add(item.checkpoint_ns)
            self.check_row(item)
        self.report.threads_scanned += 1
        if self.kind != LANGGRAPH_REDIS:
            return
        if "" in namespaces and c.EMPTY_NS in namespaces:
            for ns in ("", c.EMPTY_NS):
                self.report.add(Finding("langgraph-redis.empty-ns", thread_id, ns, None,
                                        "namespaces '' and '__empty__' are one", group=c.storage_key(thread_id, ns)))
        for ns in namespaces:
            if c.may_join(thread_id, ns):
                self.joins.setdefault(c.storage_key(thread_id, ns), set()).add((thread_id, ns))

    def check_row(self, item: StoredCheckpoint) -> None:
        if self.kind == POSTGRES:
            self._postgres_row(item)
        elif self.kind == REDIS:
            self._redis_row(item)
        elif self.kind == LANGGRAPH_REDIS:
            self._langgraph_redis_row(item)
        elif self.kind == SQLITE:
            self._sqlite_row(item)

    def _finding(self, rule: str, item: StoredCheckpoint, what: str) -> None:
        self.report.add(Finding(rule, item.thread_id, item.checkpoint_ns, item.checkpoint_id, what))

    def _values(self, item: StoredCheckpoint) -> list[tuple[str, Any]]:
        values = [(f"channel {k}", v) for k, v in (item.checkpoint.get("channel_values") or {}).items()]
        return values + [(f"write {w.task_id}/{w.idx} ({w.channel})", w.value) for w in item.writes]

    def _row_ids(self, item: StoredCheckpoint) -> list[str]:
        texts = [item.checkpoint_ns, item.checkpoint_id, item.parent_checkpoint_id or ""]
        return texts + [t for w in item.writes for t in (w.task_id, w.channel, w.task_path)]

    def _surrogate_ids(self, item: StoredCheckpoint, texts: list[str]) -> None:
        if any(c.has_surrogate(t) for t in texts):
            self._finding(SURROGATE_ID_RULES[self.kind], item,
                          "a lone surrogate in a namespace, checkpoint id, task id or channel name")

    def _postgres_row(self, item: StoredCheckpoint) -> None:
        texts = self._row_ids(item)
        if any(c.has_nul(t) for t in texts):
            self._finding("postgres.nul", item, "NUL in a namespace, checkpoint id, task id or channel name")
        self._surrogate_ids(item, texts)
        meta = c.value_facts(item.metadata)
        if meta.nul is not None:
            self._finding("postgres.nul", item, f"NUL in metadata at {meta.nul}")
        if meta.surrogate is not None:
            self._finding("postgres.surrogate", item, f"a lone surrogate in metadata at {meta.surrogate}")
        if meta.non_finite is not None:
            self._finding("postgres.json-non-finite", item, f"metadata at {meta.non_finite}")
        limit = self.limits["postgres_bytes"]
        if meta.size > limit:
            self._finding("postgres.size", item, f"metadata about {meta.size} bytes")
        for name, value in self._values(item):
            if isinstance(value, float) and name.startswith("channel") and not math.isfinite(value):
                self._finding("postgres.json-non-finite", item, f"{name} (kept inline)")
            elif isinstance(value, str) and name.startswith("channel") and c.has_nul(value):
                self._finding("postgres.nul", item, f"{name} (kept inline)")
            if name.startswith("channel") and c.has_surrogate(value):
                self._finding("postgres.surrogate", item, f"a lone surrogate in {name} (kept inline)")
            if (size := c.value_facts(value).size) > limit:
                self._finding("postgres.size", item, f"{name} about {size} bytes")

    def _msgpack_row(self, item: StoredCheckpoint, prefix: str, meta_depth: int, value_depth: int) -> ValueSummary:
        meta = c.value_facts(item.metadata)
        total = meta.size
        big = meta.big_int and f"metadata at {meta.big_int}"
        deep = f"metadata nested {meta.depth} deep" if meta.depth > meta_depth else None
        non_finite = meta.non_finite and f"metadata at {meta.non_finite}"
        for name, value in self._values(item):
            facts = c.value_facts(value)
            total += facts.size
            big = big or (facts.big_int and f"{name} at {facts.big_int}")
            non_finite = non_finite or (facts.non_finite and f"{name} at {facts.non_finite}")
            if deep is None and facts.depth > value_depth:
                deep = f"{name} nested {facts.depth} deep"
        if big:
            self._finding(f"{prefix}.big-int", item, big)
        if deep:
            self._finding(f"{prefix}.deep-nesting", item, deep)
        if total > self.limits["redis_bytes"]:
            self._finding(f"{prefix}.size", item, f"values about {total} bytes")
        return ValueSummary(meta, non_finite)

    def _redis_row(self, item: StoredCheckpoint) -> None:
        self._surrogate_ids(item, self._row_ids(item))
        summary = self._msgpack_row(item, "redis", MSGPACK_MAX_DEPTH, MSGPACK_MAX_DEPTH)
        if summary.metadata.surrogate is not None:
            self._finding("redis.surrogate", item, f"metadata at {summary.metadata.surrogate}")

    def _sqlite_row(self, item: StoredCheckpoint) -> None:
        """Only metadata changes quietly (UTF-8 with errors='ignore'); ids with one fail loudly."""
        if (at := c.value_facts(item.metadata).surrogate) is not None:
            self._finding("sqlite.surrogate", item, f"a lone surrogate in metadata at {at}")

    def _langgraph_redis_row(self, item: StoredCheckpoint) -> None:
        if c.has_nul(item.checkpoint_ns) or c.has_nul(item.checkpoint_id):
            self._finding("langgraph-redis.nul-id", item, "NUL in the namespace or checkpoint id")
        self._surrogate_ids(item, self._row_ids(item))
        summary = self._msgpack_row(item, "langgraph-redis", ORJSON_MAX_DEPTH, REDISJSON_VALUE_MAX_DEPTH)
        if summary.non_finite:
            self._finding("langgraph-redis.json-non-finite", item, summary.non_finite)
        if summary.metadata.nul is not None:
            self._finding("langgraph-redis.json-nul", item, f"metadata at {summary.metadata.nul}")
        if (at := summary.metadata.surrogate) is not None:
            self._finding("langgraph-redis.surrogate", item, f"a lone surrogate in metadata at {at}")

    # -- the end ---------------------------------------------------------------------------

    def finish_collisions(self) -> None:
        """Report the groups this shard owns (the shard of the group's smallest id)."""
        if not self.collisions:
            return
        add = self.report.add
        for rule, groups in self.folds.items():
            for folded, members in groups.items():
                ids = sorted(set(members))
                if len(ids) > 1 and self.wanted(ids[0]):
                    for thread_id in ids:
                        add(Finding(rule, thread_id, what=f"{len(ids)} ids are one to the tag search", group=folded))
        if len(self.empties) > 1 and self.wanted(min(self.empties)):
            for thread_id in sorted(self.empties):
                add(Finding("langgraph-redis.empty-id", thread_id, what="stored as the zero UUID", group=c.ZERO_UUID))
        for key, pairs in self.joins.items():
            if len(pairs) > 1:
                for thread_id, ns in sorted(pairs):
                    add(Finding("langgraph-redis.key-join", thread_id, ns, None, f"key {key!r} is shared",
                                group=key))

    def needs_second_pass(self) -> bool:
        return any(self.folds[rule] for rule in self.folds)


class ValueSummary:
    __slots__ = ("metadata", "non_finite")

    def __init__(self, metadata: c.ValueFacts, non_finite: str | None) -> None:
        self.metadata, self.non_finite = metadata, non_finite


def _ids(run: PreflightRun) -> Plan[Any]:
    if run.thread_ids is not None:
        return iter(run.thread_ids)
    return (yield Call("source", "thread_ids", stream=True))


def scan_plan(run: PreflightRun) -> Plan[PreflightReport]:
    """Read the source and judge it; see the module docstring."""
    started = time.perf_counter()
    ids = yield from _ids(run)
    while (thread_id := (yield Next(ids))) is not END:
        run.see_id(thread_id)
        if not run.wanted(thread_id):
            continue
        run.check_thread_id(thread_id)
        read_started = time.perf_counter()
        rows = yield Call("source", "read_thread", (thread_id,), stream=True)
        items = []
        while (item := (yield Next(rows))) is not END:
            items.append(item)
        run.check_thread(thread_id, items)
        if run.throttle is not None:
            run.throttle.observe(time.perf_counter() - read_started)
            if delay := run.throttle.after(len(items)):
                yield Call("clock", "sleep", (delay,))
    if run.needs_second_pass():
        ids = yield from _ids(run)
        while (thread_id := (yield Next(ids))) is not END:
            run.see_id_again(thread_id)
    run.finish_collisions()
    run.report.elapsed_s = time.perf_counter() - started
    return run.report
