"""What the renderers share: titles and help per kind, the verdict, and how one field
value is shown (a digest, a plain value, or "absent")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dualsaver.checker.findings import DivergenceReport

KIND_TITLES = {
    "missing_in_new": "missing in new",
    "missing_in_old": "missing in old",
    "checkpoint_mismatch": "checkpoint mismatch",
    "metadata_mismatch": "metadata mismatch",
    "writes_mismatch": "writes mismatch",
    "unreadable": "unreadable",
}
KIND_HELP = {
    "missing_in_new": "checkpoints the old store has and the new one lacks",
    "missing_in_old": "checkpoints only the new store has",
    "checkpoint_mismatch": "channel values, versions, versions seen or parent differ",
    "metadata_mismatch": "checkpoint metadata differs",
    "writes_mismatch": "pending writes differ in content or order",
    "unreadable": "rows that failed to load in one store or both",
}
MAX_LISTED = 500  # divergences shown per page; the JSON keeps them all


def verdict(report: DivergenceReport) -> str:
    return "yes" if report.clean else "no"


def scope_note(summary: Mapping[str, Any]) -> str | None:
    """Why a clean verdict may not cover every thread."""
    parts = []
    if summary.get("shard"):
        parts.append(f"shard {summary['shard']} only")
    if summary.get("thread_filter") is not None:
        parts.append(f"{summary['thread_filter']} selected thread(s) only")
    return "; ".join(parts) or None


def show_cell(value: Any) -> str:
    """One field side as short text: a digest, a plain value, or 'absent'."""
    if value is None:
        return "absent"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={show_cell(v)}" for k, v in value.items())
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def show_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str)


def by_thread(report: DivergenceReport) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for d in report.divergences:
        grouped.setdefault(d.thread_id, []).append(d)
    return grouped
