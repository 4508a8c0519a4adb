"""The backfill's preflight: scan first, refuse what the target cannot hold unless accepted.

`allow_lossy` names the rule classes the operator accepts (`dualsaver.preflight.rules`): the
target's writer may then convert them (NaN as null, say), and the backfill's result names
every thread and rule it accepted (`BackfillResult.lossy`). Anything else the preflight finds
stops the backfill before a row is copied (`PreflightRefused`, carrying the report).

`preflight=None` (the default) scans when classes are accepted, or when the target is one whose
losses no row writer can see (`SCAN_BEFORE_COPY`: the official Redis saver's colliding ids); elsewhere the writers
refuse, row by row, whatever they cannot hold exactly (a bad row names it). `True` always
scans, `False` never does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from dualsaver.control.throttle import Throttle
from dualsaver.errors import PreflightRefused
from dualsaver.preflight import PreflightReport, apreflight, parse_classes, preflight as scan, target_kind
from dualsaver.preflight.rules import SCAN_BEFORE_COPY


def allow(target: Any, allow_lossy: Collection[str] | str | None) -> frozenset[str]:
    """The accepted classes, handed to the target's writer (those that convert know them)."""
    allowed = parse_classes(allow_lossy)
    writer = getattr(target, "store", target)  # a sync store run in worker threads: the store
    if hasattr(writer, "allow_lossy"):
        writer.allow_lossy = allowed
    return allowed


def wanted(target: Any, preflight: bool | None, allowed: frozenset[str]) -> bool:
    """Scan when asked, else when the target needs it or classes were accepted (the result
    then names what they changed)."""
    if preflight is not None:
        return preflight
    return bool(allowed) or target_kind(target) in SCAN_BEFORE_COPY


def judge(report: PreflightReport, allowed: frozenset[str]) -> list[dict[str, Any]]:
    """The accepted findings (what the copy will change), or `PreflightRefused`."""
    refused = report.refused(allowed)
    if refused:
        classes = sorted({f.rule_class for f in refused})
        raise PreflightRefused(
            f"preflight: the {report.target_kind} target cannot hold {len(refused)} finding(s) faithfully"
            f" (classes {', '.join(classes)}); nothing copied. Accept them with --allow-lossy"
            f" {','.join(classes)}, or fix the source.\n{report.summary()}",
            report,
        )
    return [{"rule": f.rule, "class": f.rule_class, "thread_id": f.thread_id, "checkpoint_ns": f.checkpoint_ns,
             "checkpoint_id": f.checkpoint_id, "what": f.what} for f in report.findings]


def gate(source: Any, target: Any, *, preflight: bool | None, allowed: frozenset[str],
         shard: tuple[int, int] | None, thread_ids: Iterable[str] | None, throttle: Throttle | None,
         names: dict[str, str]) -> list[dict[str, Any]]:
    if not wanted(target, preflight, allowed):
        return []
    report = scan(source, target, shard=shard, thread_ids=thread_ids, throttle=throttle,
                  old_name=names["old_name"], new_name=names["new_name"])
    return judge(report, allowed)


async def agate(source: Any, target: Any, *, preflight: bool | None, allowed: frozenset[str],
                shard: tuple[int, int] | None, thread_ids: Iterable[str] | None, throttle: Throttle | None,
                names: dict[str, str]) -> list[dict[str, Any]]:
    if not wanted(target, preflight, allowed):
        return []
    report = await apreflight(source, target, shard=shard, thread_ids=thread_ids, throttle=throttle,
                              old_name=names["old_name"], new_name=names["new_name"])
    return judge(report, allowed)
