"""The issue's adversarial cases, planted in a source store, and what each target must say.

`CASES` is the one list: a thread id, its namespace, its metadata and channel values, and the
rules each target kind names for it. Ordinary ids and UUIDs carry no rule anywhere.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from dualsaver.preflight import PreflightReport

NAN, INF = float("nan"), float("inf")


def nested(depth: int) -> list:
    """A list nested `depth` deep ([] is 1)."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@dataclass(frozen=True)
class Case:
    thread_id: str
    ns: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    rules: dict[str, frozenset[str]] = field(default_factory=dict)  # target kind -> rule ids


def _rules(**by_kind: tuple[str, ...]) -> dict[str, frozenset[str]]:
    return {kind.replace("_", "-"): frozenset(ids) for kind, ids in by_kind.items()}


LG = "langgraph-redis"
ORDINARY = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(3)] + ["user-42", "thread_7", "t.1", "é-unicode"]
CASES: list[Case] = [
    *[Case(t) for t in ORDINARY],
    Case("Alice", rules=_rules(langgraph_redis=("langgraph-redis.case-fold",))),
    Case("alice", rules=_rules(langgraph_redis=("langgraph-redis.case-fold",))),
    Case("a\nb", rules=_rules(langgraph_redis=("langgraph-redis.space-fold", "langgraph-redis.search-syntax"))),
    Case("a b", rules=_rules(langgraph_redis=("langgraph-redis.space-fold",))),
    Case("_", rules=_rules(langgraph_redis=("langgraph-redis.search-syntax",))),
    Case("a", "b:__empty__", rules=_rules(langgraph_redis=("langgraph-redis.key-join",))),
    Case("a:b", rules=_rules(langgraph_redis=("langgraph-redis.key-join",))),
    Case("", rules=_rules(langgraph_redis=("langgraph-redis.empty-id",))),
    Case("00000000-0000-0000-0000-000000000000", rules=_rules(langgraph_redis=("langgraph-redis.empty-id",))),
    Case("ns-both", "__empty__", rules=_rules(langgraph_redis=("langgraph-redis.empty-ns",))),
    Case("nul\x00id", rules=_rules(langgraph_redis=("langgraph-redis.nul-id", "langgraph-redis.search-syntax"),
                                   postgres=("postgres.nul",))),
    Case("nan-meta", metadata={"score": NAN, "hi": INF, "lo": -INF},
         rules=_rules(langgraph_redis=("langgraph-redis.json-non-finite",), postgres=("postgres.json-non-finite",))),
    Case("nan-value", values={"score": NAN},
         rules=_rules(langgraph_redis=("langgraph-redis.json-non-finite",), postgres=("postgres.json-non-finite",))),
    Case("nul-meta", metadata={"note": {"text": "a\x00b"}},
         rules=_rules(langgraph_redis=("langgraph-redis.json-nul",), postgres=("postgres.nul",))),
    Case("big-int", metadata={"n": 2**64},
         rules=_rules(langgraph_redis=("langgraph-redis.big-int",), redis=("redis.big-int",))),
    Case("deep-meta", metadata={"d": nested(260)},
         rules=_rules(langgraph_redis=("langgraph-redis.deep-nesting",), redis=("redis.deep-nesting",))),
    Case("deep-value", values={"d": nested(130)}, rules=_rules(langgraph_redis=("langgraph-redis.deep-nesting",))),
]
# the thread ns-both also has a root-namespace checkpoint (planted by `plant`)


def expected(kind: str) -> dict[str, set[str]]:
    """rule id -> the thread ids a preflight against `kind` must name (and no other)."""
    out: dict[str, set[str]] = {}
    for case in CASES:
        for rule in case.rules.get(kind, ()):
            out.setdefault(rule, set()).add(case.thread_id)
    return out


def put(saver: Any, thread_id: str, ns: str = "", metadata: dict | None = None, values: dict | None = None) -> str:
    checkpoint = empty_checkpoint()
    values = values or {}
    checkpoint["channel_values"] = dict(values)
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
    saver.put(config, checkpoint, {"source": "input", "step": 1, **(metadata or {})}, checkpoint["channel_versions"])
    return checkpoint["id"]


def plant(saver: Any, cases: list[Case] = CASES) -> None:
    """Every case into `saver` (a SqliteSaver, which holds them all exactly)."""
    for case in cases:
        put(saver, case.thread_id, case.ns, case.metadata, case.values)
        if case.thread_id == "ns-both":
            put(saver, case.thread_id, "")


def by_rule(report: PreflightReport) -> dict[str, set[str]]:
    """The threads each rule of a preflight report found."""
    out: dict[str, set[str]] = {}
    for f in report.findings:
        out.setdefault(f.rule, set()).add(f.thread_id)
    return out
