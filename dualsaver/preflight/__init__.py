"""Preflight: what a target store cannot hold faithfully, named before anything is copied.

    report = preflight(sqlite_saver, official_redis_saver)
    report.clean                 # nothing the target would change, lose or refuse
    report.findings              # [Finding(rule, thread_id, checkpoint_ns, checkpoint_id, what, group)]
    report.refused({"nul"})      # what `--allow-lossy nul` still refuses

The source is scanned (ids and values; `shard=(i, n)`, `thread_ids`, a `throttle`, as the
check) against the rules of the target's kind (`dualsaver.preflight.rules`); the target is
only asked what it is, never read (a kind given as text, "postgres", will do). Exit codes of
``dualsaver preflight``: 0 clean, 1 findings, 2 could not run.

`dualsaver.preflight` (the attribute of the top package) is the function, as `dualsaver.check`
is: import this package's modules with ``from dualsaver.preflight import rules``, not
``import dualsaver.preflight.rules as rules`` (which resolves through the attribute).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dualsaver import sansio
from dualsaver.control.throttle import Throttle
from dualsaver.preflight._scan import PreflightRun, scan_plan
from dualsaver.preflight.findings import Finding, PreflightReport
from dualsaver.preflight.rules import BY_ID, CLASSES, RULES, Rule, parse_classes, rules_for
from dualsaver.sansio import AsyncTargets, Targets
from dualsaver.stores import anative_for, native_for, store_identity

__all__ = [
    "BY_ID", "CLASSES", "RULES", "Finding", "PreflightReport", "Rule", "apreflight", "parse_classes", "preflight",
    "rules_for", "target_kind",
]

_KIND_BY_MODULE = {  # the module of a saver or of its native store -> the target kind
    "dualsaver.stores._postgres": "postgres", "langgraph.checkpoint.postgres": "postgres",
    "dualsaver.stores._langgraph_redis": "langgraph-redis", "langgraph.checkpoint.redis": "langgraph-redis",
    "dualsaver.stores._redis": "redis", "dualsaver.redis": "redis",
    "dualsaver.stores._sqlite": "sqlite", "langgraph.checkpoint.sqlite": "sqlite",
    "dualsaver.stores._memory": "memory", "langgraph.checkpoint.memory": "memory",
}


def target_kind(target: Any) -> str:
    """`postgres`, `redis` (dualsaver's), `langgraph-redis` (the official saver), `sqlite`,
    `memory`, or `other`, for a saver or a native store (a kind given as text is returned)."""
    if isinstance(target, str):
        return target
    for obj in (target, getattr(target, "store", None), getattr(target, "saver", None)):
        module = type(obj).__module__ if obj is not None else ""
        for prefix, kind in _KIND_BY_MODULE.items():
            if module == prefix or module.startswith(prefix + "."):
                return kind
    return "other"


def _run(old: Any, new: Any, shard: tuple[int, int] | None, thread_ids: Iterable[str] | None,
         throttle: Throttle | None, limits: dict[str, int] | None, old_name: str | None,
         new_name: str | None) -> PreflightRun:
    report = PreflightReport(target_kind(new), old_name or store_identity(old), new_name or store_identity(new))
    return PreflightRun(report, shard=shard, thread_ids=thread_ids, throttle=throttle, limits=limits)


def preflight(
    old: Any, new: Any, *, shard: tuple[int, int] | None = None, thread_ids: Iterable[str] | None = None,
    throttle: Throttle | None = None, limits: dict[str, int] | None = None, old_name: str | None = None,
    new_name: str | None = None,
) -> PreflightReport:
    """Scan `old` (a saver or a native store) against what `new` can hold; see the module
    docstring. `limits` overrides the byte limits (``redis_bytes``, ``postgres_bytes``)."""
    run = _run(old, new, shard, thread_ids, throttle, limits, old_name, new_name)
    return sansio.run(scan_plan(run), Targets(source=native_for(old)))


async def apreflight(
    old: Any, new: Any, *, shard: tuple[int, int] | None = None, thread_ids: Iterable[str] | None = None,
    throttle: Throttle | None = None, limits: dict[str, int] | None = None, old_name: str | None = None,
    new_name: str | None = None,
) -> PreflightReport:
    """The async form of `preflight`: the same plan, awaited."""
    run = _run(old, new, shard, thread_ids, throttle, limits, old_name, new_name)
    return await sansio.arun(scan_plan(run), AsyncTargets(source=anative_for(old)))
