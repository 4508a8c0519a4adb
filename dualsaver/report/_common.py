"""What the renderers share: titles and help per kind, the verdict, and how one field
value is shown (a digest, a plain value, or "absent")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
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


NEXT_STEP = (
    "next: `dualsaver repair --report REPORT.json` (this check's JSON report) copies the affected"
    " threads again from the phase's source of truth; then run `dualsaver check` again"
)
MISSING_KINDS = ("missing_in_new", "missing_in_old")


@dataclass(frozen=True)
class Entry:
    """What a report lists for people: one divergence, or a run of checkpoints missing from
    one store (`count` of them, from `first` to `last`, over `namespaces` namespaces)."""

    first: Any
    count: int = 1
    last: str = ""
    namespaces: tuple[str, ...] = ()

    @property
    def checkpoints(self) -> str:
        if self.count == 1:
            return self.first.checkpoint_id or "(whole thread)"
        return f"{self.count} checkpoints, {self.first.checkpoint_id} .. {self.last}"

    @property
    def namespace(self) -> str:
        if len(self.namespaces) > 1:
            return f"{len(self.namespaces)} namespaces"
        return self.first.checkpoint_ns or "(root)"

    @property
    def notes(self) -> dict[str, Any]:
        """The divergence's detail worth a line (of a run: only what all its rows share)."""
        keep = {k: v for k, v in self.first.detail.items() if k != "fields" and v is not None}
        return keep if self.count == 1 else {k: v for k, v in keep.items() if k == "present_in"}


def collapsed(items: list) -> list[Entry]:
    """A thread's divergences as people read them: checkpoints missing from one store, in a
    row, are one entry with their count (a thread missing whole is one line, not one per
    checkpoint); the JSON lists each."""
    out: list[Entry] = []
    for d in items:
        run = out[-1] if out else None
        if run is not None and d.kind in MISSING_KINDS and run.first.kind == d.kind:
            spaces = run.namespaces + (() if d.checkpoint_ns in run.namespaces else (d.checkpoint_ns,))
            out[-1] = Entry(run.first, run.count + 1, d.checkpoint_id, spaces)
        else:
            out.append(Entry(d, 1, d.checkpoint_id, (d.checkpoint_ns,)))
    return out
