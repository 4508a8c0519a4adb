"""What the check finds: the six kinds of divergence between checkpoints and the seven between
the long-term store's items, one `Divergence`, and the `DivergenceReport` a check returns (JSON
in and out, so a report can be re-read and repaired from later). No I/O and no store access
here."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

MISSING_IN_NEW = "missing_in_new"
MISSING_IN_OLD = "missing_in_old"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
METADATA_MISMATCH = "metadata_mismatch"
WRITES_MISMATCH = "writes_mismatch"
UNREADABLE = "unreadable"
# The store's items: named as the journal names them (thread_id empty, checkpoint_ns the
# namespace as a JSON list, checkpoint_id the key).
ITEM_MISSING_IN_NEW = "item_missing_in_new"
ITEM_MISSING_IN_OLD = "item_missing_in_old"
ITEM_VALUE_MISMATCH = "item_value_mismatch"
ITEM_TIMESTAMP_MISMATCH = "item_timestamp_mismatch"
ITEM_TTL_MISMATCH = "item_ttl_mismatch"
ITEM_VECTOR_MISMATCH = "item_vector_mismatch"
ITEM_UNREADABLE = "item_unreadable"
ITEM_KINDS = (
    ITEM_MISSING_IN_NEW,
    ITEM_MISSING_IN_OLD,
    ITEM_VALUE_MISMATCH,
    ITEM_TIMESTAMP_MISMATCH,
    ITEM_TTL_MISMATCH,
    ITEM_VECTOR_MISMATCH,
    ITEM_UNREADABLE,
)
KINDS = (
    MISSING_IN_NEW,
    MISSING_IN_OLD,
    CHECKPOINT_MISMATCH,
    METADATA_MISMATCH,
    WRITES_MISMATCH,
    UNREADABLE,
)
ALL_KINDS = KINDS + ITEM_KINDS
SIDES = ("old", "new")
MAX_FIELDS_LISTED = 25  # per divergence; the count of the rest is kept


@dataclass(frozen=True, slots=True)
class Divergence:
    """One difference between the stores, for one checkpoint (or one whole thread)."""

    kind: str
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What must persist across re-checks for the divergence to be reported."""
        return (self.kind, self.thread_id, self.checkpoint_ns, self.checkpoint_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "thread_id": self.thread_id,
            "checkpoint_ns": self.checkpoint_ns,
            "checkpoint_id": self.checkpoint_id,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Divergence:
        return cls(
            kind=data["kind"],
            thread_id=data["thread_id"],
            checkpoint_ns=data.get("checkpoint_ns", ""),
            checkpoint_id=data.get("checkpoint_id", ""),
            detail=dict(data.get("detail") or {}),
        )


def report_order(d: Divergence) -> tuple[str, str, str, int]:
    """Where a divergence stands in a check's report: by thread, namespace, checkpoint, kind."""
    return (d.thread_id, d.checkpoint_ns, d.checkpoint_id, ALL_KINDS.index(d.kind))


@dataclass(slots=True)
class DivergenceReport:
    """The result of a check: `clean` is the verdict on switching reads."""

    clean: bool
    divergences: list[Divergence]
    summary: dict[str, Any]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)  # the item kinds count in when a check compared items
        if "items" in self.summary:
            counts.update(dict.fromkeys(ITEM_KINDS, 0))
        for d in self.divergences:
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return counts

    def affected_threads(self) -> list[str]:
        return sorted({d.thread_id for d in self.divergences if d.kind not in ITEM_KINDS})

    def affected_items(self, kinds: Collection[str] = ITEM_KINDS) -> list[tuple[tuple[str, ...], str]]:
        """(namespace, key) of every item a divergence (of `kinds`) names."""
        found = {
            (tuple(json.loads(d.checkpoint_ns)), d.checkpoint_id) for d in self.divergences if d.kind in kinds
        }
        return sorted(found)

    def part(self, items: bool) -> DivergenceReport:
        """The items' findings (or the checkpoints'), as a report of their own."""
        kept = [d for d in self.divergences if (d.kind in ITEM_KINDS) == items]
        return DivergenceReport(clean=not kept, divergences=kept, summary=dict(self.summary))

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "summary": self.summary,
            "divergences": [d.to_dict() for d in self.divergences],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DivergenceReport:
        return cls(
            clean=bool(data["clean"]),
            divergences=[Divergence.from_dict(d) for d in data.get("divergences", [])],
            summary=dict(data.get("summary") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> DivergenceReport:
        return cls.from_dict(json.loads(text))

    def between_tiers(self) -> DivergenceReport:
        """This report read as a check of a TieredSaver's durable store ("old") against its
        hot one ("new"): the hot store legitimately holds less (threads and checkpoints it
        never held, or that expired), so what is missing there is not a divergence; what
        it holds must match, and what it holds that the durable store lacks is one."""
        kept = [d for d in self.divergences if d.kind != MISSING_IN_NEW]
        summary = {**self.summary, "tiered": True, "not_hot": len(self.divergences) - len(kept)}
        summary["counts"] = dict(DivergenceReport(not kept, kept, {}).counts())
        return DivergenceReport(clean=not kept, divergences=kept, summary=summary)
