"""Shadow reads: compare what new answers with what old answered, field by field.

Pure functions; the plan decides when to shadow-read, the saver records mismatches.
Only digests leave this module, never conversation values.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import CheckpointTuple

from dualsaver.checker.canonical import digest
from dualsaver.stores.native import shard_of


def differing_fields(old: CheckpointTuple | None, new: CheckpointTuple | None) -> list[str]:
    """Names of the fields where new's answer differs from old's; empty when they agree."""
    if old is None or new is None:
        return [] if old is new else ["missing_in_new" if new is None else "missing_in_old"]
    fields = []
    if old.checkpoint["id"] != new.checkpoint["id"]:
        return ["checkpoint_id"]
    old_values, new_values = old.checkpoint["channel_values"], new.checkpoint["channel_values"]
    for channel in sorted(set(old_values) | set(new_values)):
        one_side = channel not in old_values or channel not in new_values
        if one_side or digest(old_values[channel]) != digest(new_values[channel]):
            fields.append(f"channel_values.{channel}")
    for key in ("channel_versions", "versions_seen"):
        if digest(old.checkpoint.get(key)) != digest(new.checkpoint.get(key)):
            fields.append(f"checkpoint.{key}")
    if digest(dict(old.metadata)) != digest(dict(new.metadata)):
        fields.append("metadata")
    if _parent(old) != _parent(new):
        fields.append("parent")
    if digest(list(old.pending_writes or [])) != digest(list(new.pending_writes or [])):
        fields.append("pending_writes")
    return fields


def _parent(tup: CheckpointTuple) -> Any:
    return (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")


def in_canary(thread_id: str, percent: float) -> bool:
    """Whether a thread is among the first `percent` % by a stable hash of its id."""
    return shard_of(thread_id, 10_000) < percent * 100



