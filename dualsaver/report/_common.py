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
    "item_missing_in_new": "store item missing in new",
    "item_missing_in_old": "store item missing in old",
    "item_value_mismatch": "store item value mismatch",
    "item_timestamp_mismatch": "store item timestamp mismatch",
    "item_ttl_mismatch": "store item TTL mismatch",
    "item_vector_mismatch": "store item vector mismatch",
    "item_unreadable": "store item unreadable",
}
KIND_HELP = {
    "missing_in_new": "checkpoints the old store has and the new one lacks",
    "missing_in_old": "checkpoints only the new store has",
    "checkpoint_mismatch": "channel values, versions, versions seen or parent differ",
    "metadata_mismatch": "checkpoint metadata differs",
    "writes_mismatch": "pending writes differ in content or order",
    "unreadable": "rows that failed to load in one store or both",
    "item_missing_in_new": "long-term store items the old store has and the new one lacks",
    "item_missing_in_old": "long-term store items only the new store has",
    "item_value_mismatch": "an item's JSON value differs (compared by meaning)",
    "item_timestamp_mismatch": "an item's created_at or updated_at differs",
    "item_ttl_mismatch": "an item's expiry or TTL minutes differ",
    "item_vector_mismatch": "an item's stored embeddings differ (beyond float32 rounding)",
    "item_unreadable": "items whose stored value does not decode, in one store or both",
}
MAX_LISTED = 500  # divergences shown per page; the JSON keeps them all


def kinds_shown(report: DivergenceReport) -> list[str]:
    """Every checkpoint kind; the store's item kinds when the check compared items."""
    from dualsaver.checker.findings import ALL_KINDS, ITEM_KINDS

    counts = report.summary.get("counts") or report.counts()
    items = "items" in report.summary or any(counts.get(k) for k in ITEM_KINDS)
    return [k for k in ALL_KINDS if items or k not in ITEM_KINDS]


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
