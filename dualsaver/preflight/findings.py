"""What a preflight found: one `Finding` per affected thread (or row) and rule, in a
`PreflightReport` that renders as JSON, Markdown and HTML (`dualsaver.report.preflight`).

A finding never carries a value, only where it is (`$.score`) and why; ids are shown, as in
the check's report. Collisions carry a `group`: the key the threads share in the target.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from dualsaver.preflight.rules import BY_ID
from dualsaver.stores.faithful import ascii_safe

MAX_FINDINGS_KEPT = 10_000  # findings listed; all are counted


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    thread_id: str
    checkpoint_ns: str | None = None  # None: the whole thread (an id rule)
    checkpoint_id: str | None = None
    what: str = ""  # where, in our words (a JSON path, a measured depth); never a value
    group: str | None = None  # collisions: the key the group's threads share in the target

    @property
    def rule_class(self) -> str:
        return BY_ID[self.rule].rule_class


@dataclass
class PreflightReport:
    target_kind: str
    old: str = ""  # store names, passwords redacted
    new: str = ""
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # findings per rule (all, also those not kept)
    threads_scanned: int = 0
    checkpoints_scanned: int = 0
    unreadable: int = 0  # source rows that did not decode (the check and backfill name them)
    shard: str | None = None
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.counts

    def add(self, finding: Finding) -> None:
        self.counts[finding.rule] = self.counts.get(finding.rule, 0) + 1
        if len(self.findings) < MAX_FINDINGS_KEPT:
            self.findings.append(finding)

    def affected_threads(self, rule: str | None = None) -> list[str]:
        return list(dict.fromkeys(f.thread_id for f in self.findings if rule is None or f.rule == rule))

    def classes(self) -> set[str]:
        return {BY_ID[rule].rule_class for rule in self.counts}

    def refused(self, allowed: Collection[str] = ()) -> list[Finding]:
        """The findings `--allow-lossy` with these classes does not accept."""
        return [f for f in self.findings if f.rule_class not in allowed]

    def groups(self) -> dict[tuple[str, str], list[str]]:
        """(rule, shared key) -> the colliding thread ids, for the collision rules."""
        out: dict[tuple[str, str], list[str]] = {}
        for f in self.findings:
            if f.group is not None:
                members = out.setdefault((f.rule, f.group), [])
                if f.thread_id not in members:
                    members.append(f.thread_id)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "preflight",
            "target_kind": self.target_kind,
            "stores": {"old": self.old, "new": self.new},
            "clean": self.clean,
            "counts": dict(sorted(self.counts.items())),
            "threads_scanned": self.threads_scanned,
            "checkpoints_scanned": self.checkpoints_scanned,
            "unreadable": self.unreadable,
            "shard": self.shard,
            "notes": list(self.notes),
            "elapsed_s": round(self.elapsed_s, 3),
            "groups": [{"rule": r, "key": k, "threads": t} for (r, k), t in self.groups().items()],
            "findings": [{**asdict(f), "class": f.rule_class} for f in self.findings],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreflightReport:
        report = cls(data["target_kind"], data["stores"]["old"], data["stores"]["new"],
                     counts=dict(data["counts"]), threads_scanned=data["threads_scanned"],
                     checkpoints_scanned=data["checkpoints_scanned"], unreadable=data.get("unreadable", 0),
                     shard=data.get("shard"), notes=list(data.get("notes", [])), elapsed_s=data.get("elapsed_s", 0.0))
        keys = ("rule", "thread_id", "checkpoint_ns", "checkpoint_id", "what", "group")
        report.findings = [Finding(**{k: f[k] for k in keys}) for f in data["findings"]]
        return report

    def summary(self) -> str:
        if self.clean:
            return (f"preflight: the {self.target_kind} target can hold all {self.threads_scanned} thread(s)"
                    f" ({self.checkpoints_scanned} checkpoint(s)) faithfully")
        lines = [f"preflight: {sum(self.counts.values())} finding(s) in {len(self.affected_threads())} thread(s)"
                 f" of {self.threads_scanned}; the {self.target_kind} target cannot hold them faithfully:"]
        for rule, n in sorted(self.counts.items()):
            lines.append(f"  {rule} ({BY_ID[rule].rule_class}): {n}: {BY_ID[rule].detects}")
        for f in self.findings[:20]:
            where = "" if f.checkpoint_ns is None else f", ns {f.checkpoint_ns!r}, checkpoint {f.checkpoint_id}"
            lines.append(f"  - {f.rule}: thread {f.thread_id!r}{where}{': ' + f.what if f.what else ''}")
        if len(self.findings) > 20:
            lines.append(f"  ... and {sum(self.counts.values()) - 20} more (see --json / --report)")
        lines += self.notes
        return ascii_safe("\n".join(lines))  # an id with a lone surrogate still prints
