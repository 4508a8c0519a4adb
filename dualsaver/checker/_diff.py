"""The pure per-thread diff (no I/O): stored rows reduced to fingerprints, two views of
one thread compared into `Divergence`s.

A thread's rows from each store are reduced to `Fingerprint`s as they stream past: digests
of every channel value, metadata key and pending write, plus the plain (non-content)
fields: parent id, channel versions, versions seen. Values are dropped once digested, so a
thread costs a few hundred bytes per checkpoint whatever its conversation holds. Two
fingerprint maps then diff into `Divergence`s, one per (kind, checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import zip_longest
from math import isfinite
from typing import Any

from dualsaver.checker.canonical import canonical, digest
from dualsaver.checker.findings import (
    CHECKPOINT_MISMATCH,
    MAX_FIELDS_LISTED,
    METADATA_MISMATCH,
    MISSING_IN_NEW,
    MISSING_IN_OLD,
    UNREADABLE,
    WRITES_MISMATCH,
    Divergence,
)
from dualsaver.errors import describe_error
from dualsaver.stores.native import StoredCheckpoint, Unreadable, in_write_order

_PLAIN_CHECKPOINT_KEYS = frozenset({"v", "id", "ts", "updated_channels"})
_PLAIN_METADATA_KEYS = frozenset({"source", "step", "parents"})
_HANDLED_CHECKPOINT_KEYS = frozenset({"channel_values", "channel_versions", "versions_seen"})


def _saver_artefact(key: str, value: Any, checkpoint: Mapping[str, Any]) -> bool:
    """Keys the official Redis saver adds to each checkpoint it hands back and LangGraph
    never reads: its storage tag (``"type": "json"``), and from format v4 on
    ``pending_sends`` (derived from the parent's TASKS writes, compared as writes)."""
    if key == "type":
        return value in ("json", "msgpack")
    return key == "pending_sends" and isinstance(checkpoint.get("v"), int) and checkpoint["v"] >= 4



# --------------------------------------------------------------------------- fingerprints

_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """`canonical(value)` for the plain fields (ids, steps, versions), without its walk where
    it would change nothing: exact scalars, and dicts of them (a dict that could be a
    serialized object, with an "lc" or "__send__" key, takes the walk)."""
    kind = type(value)
    if kind in _SCALARS and not (kind is int and abs(value) >= 2**53) and not (kind is float and not isfinite(value)):
        return value
    if kind is dict and "lc" not in value and "__send__" not in value and all(type(k) is str for k in value):
        return {k: _plain(v) for k, v in sorted(value.items())}
    return canonical(value)



@dataclass(frozen=True, slots=True)
class Fingerprint:
    """A checkpoint reduced to what the diff compares."""

    parent: str | None
    channel_values: dict[str, str]  # channel -> digest
    channel_versions: dict[str, Any]  # plain: versions are not content
    versions_seen: dict[str, Any]
    other: dict[str, tuple[str, Any]]  # other checkpoint keys -> (digest, shown)
    metadata: dict[str, tuple[str, Any]]  # key -> (digest, shown)
    writes: tuple[tuple[str, str, int, str, str], ...]  # (task_id, task_path, idx, channel, digest)
    values: dict[str, Any] | None = None  # field -> canonical value, when values are shown


@dataclass(frozen=True, slots=True)
class Broken:
    """A row that could not be loaded (or not even digested)."""

    error: str


Print = Fingerprint | Broken


def fingerprint(item: StoredCheckpoint | Unreadable, capture_values: bool = False) -> Print:
    """Reduce one stored row; never raises (a value that cannot be digested is `Broken`)."""
    if isinstance(item, Unreadable):
        return Broken(item.error)
    try:
        return _fingerprint(item, capture_values)
    except Exception as exc:
        return Broken(f"cannot digest: {describe_error(exc)}")


def _fingerprint(item: StoredCheckpoint, capture: bool) -> Fingerprint:
    cp = item.checkpoint
    values: dict[str, Any] | None = {} if capture else None
    channel_values = {}
    for channel, value in (cp.get("channel_values") or {}).items():
        channel_values[channel] = digest(value)
        if values is not None:
            values[f"channel_values.{channel}"] = canonical(value)
    other = {}
    for key, value in cp.items():
        if key in _HANDLED_CHECKPOINT_KEYS or _saver_artefact(key, value, cp):
            continue
        shown = _plain(value) if key in _PLAIN_CHECKPOINT_KEYS else None
        other[key] = (digest(value), shown)
        if values is not None:
            values[f"checkpoint.{key}"] = canonical(value)
    metadata = {}
    for key, value in (item.metadata or {}).items():
        shown = _plain(value) if key in _PLAIN_METADATA_KEYS else None
        metadata[key] = (digest(value), shown)
        if values is not None:
            values[f"metadata.{key}"] = canonical(value)
    writes = []
    ordered = in_write_order(item.writes)  # a record built by hand may hold them in any order
    for n, w in enumerate(ordered):
        writes.append((w.task_id, w.task_path, w.idx, w.channel, digest(w.value)))
        if values is not None:
            values[f"writes[{n}]"] = canonical(w.value)
    return Fingerprint(
        parent=item.parent_checkpoint_id,
        channel_values=channel_values,
        channel_versions=_plain(dict(cp.get("channel_versions") or {})),
        versions_seen=_plain(dict(cp.get("versions_seen") or {})),
        other=other,
        metadata=metadata,
        writes=tuple(writes),
        values=values,
    )


@dataclass(slots=True)
class ThreadSide:
    """One store's view of one thread: fingerprints by (checkpoint_ns, checkpoint_id)."""

    prints: dict[tuple[str, str], Print] = field(default_factory=dict)
    writes: int = 0
    thread_error: str | None = None  # the whole thread failed to load

    def add(self, item: StoredCheckpoint | Unreadable, capture_values: bool = False) -> None:
        fp = fingerprint(item, capture_values)
        self.prints[(item.checkpoint_ns, item.checkpoint_id)] = fp
        if isinstance(fp, Fingerprint):
            self.writes += len(fp.writes)


@dataclass(slots=True)
class ThreadDiff:
    thread_id: str
    divergences: list[Divergence]
    checkpoints_old: int
    checkpoints_new: int
    checkpoints_compared: int
    writes_old: int
    writes_new: int
    by_bytes: bool = False  # decided by comparing stored bytes (`_bytes`), nothing decoded


# --------------------------------------------------------------------------- the diff


def diff_thread(
    thread_id: str,
    old: ThreadSide,
    new: ThreadSide,
    *,
    old_exact: bool = True,
    new_exact: bool = True,
) -> ThreadDiff:
    """Every divergence between two views of one thread, in (ns, id, kind) order."""
    found: list[Divergence] = []
    if old.thread_error or new.thread_error:
        found.append(_thread_unreadable(thread_id, old.thread_error, new.thread_error))
    keys = sorted(old.prints.keys() | new.prints.keys())
    for key in keys:
        found.extend(
            _diff_checkpoint(
                thread_id, key, old.prints.get(key), new.prints.get(key), old_exact, new_exact
            )
        )
    return ThreadDiff(
        thread_id=thread_id,
        divergences=found,
        checkpoints_old=len(old.prints),
        checkpoints_new=len(new.prints),
        checkpoints_compared=len(keys),
        writes_old=old.writes,
        writes_new=new.writes,
    )


def _thread_unreadable(thread_id: str, old_err: str | None, new_err: str | None) -> Divergence:
    side = "both" if old_err and new_err else ("old" if old_err else "new")
    return Divergence(
        UNREADABLE,
        thread_id,
        "",
        "",
        {
            "side": side,
            "scope": "thread",
            "fields": [{"field": "thread", "old": old_err or "readable", "new": new_err or "readable"}],
        },
    )


def _diff_checkpoint(
    thread_id: str,
    key: tuple[str, str],
    old: Print | None,
    new: Print | None,
    old_exact: bool,
    new_exact: bool,
) -> list[Divergence]:
    ns, cid = key

    def make(kind: str, detail: dict[str, Any]) -> Divergence:
        return Divergence(kind, thread_id, ns, cid, detail)

    if isinstance(old, Broken) or isinstance(new, Broken):
        side = (
            "both"
            if isinstance(old, Broken) and isinstance(new, Broken)
            else ("old" if isinstance(old, Broken) else "new")
        )

        def state(p: Print | None) -> str:
            return p.error if isinstance(p, Broken) else ("absent" if p is None else "readable")

        return [
            make(
                UNREADABLE,
                {"side": side, "fields": [{"field": "row", "old": state(old), "new": state(new)}]},
            )
        ]
    if new is None:
        assert old is not None, "a checkpoint absent from both stores is not compared"
        return [make(MISSING_IN_NEW, _presence_detail("old", old))]
    if old is None:
        return [make(MISSING_IN_OLD, _presence_detail("new", new))]

    found = []
    if fields := _checkpoint_fields(old, new):
        found.append(make(CHECKPOINT_MISMATCH, _fields_detail(fields)))
    if fields := _paired_fields("metadata", old.metadata, new.metadata, _PLAIN_METADATA_KEYS, old, new):
        found.append(make(METADATA_MISMATCH, _fields_detail(fields)))
    if detail := _writes_detail(old, new, old_exact, new_exact):
        found.append(make(WRITES_MISMATCH, detail))
    return found


def _presence_detail(side: str, fp: Fingerprint) -> dict[str, Any]:
    return {
        "present_in": side,
        "parent_checkpoint_id": fp.parent,
        "channels": len(fp.channel_values),
        "writes": len(fp.writes),
        "fields": [],
    }


def _fields_detail(fields: list[dict[str, Any]]) -> dict[str, Any]:
    detail: dict[str, Any] = {"fields": fields[:MAX_FIELDS_LISTED]}
    if len(fields) > MAX_FIELDS_LISTED:
        detail["more_fields"] = len(fields) - MAX_FIELDS_LISTED
    return detail


def _with_values(entry: dict[str, Any], name: str, old: Fingerprint, new: Fingerprint) -> dict:
    if old.values is not None and new.values is not None:
        entry["old_value"] = old.values.get(name)
        entry["new_value"] = new.values.get(name)
    return entry


def _digest_fields(
    prefix: str, a: Mapping[str, str], b: Mapping[str, str], old: Fingerprint, new: Fingerprint
) -> list[dict[str, Any]]:
    fields = []
    for name in sorted(a.keys() | b.keys()):
        if a.get(name) != b.get(name):
            path = f"{prefix}.{name}"
            entry = {"field": path, "old": a.get(name), "new": b.get(name)}
            fields.append(_with_values(entry, path, old, new))
    return fields


def _checkpoint_fields(old: Fingerprint, new: Fingerprint) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = []
    if old.parent != new.parent:
        fields.append({"field": "parent_checkpoint_id", "old": old.parent, "new": new.parent})
    fields += _digest_fields("channel_values", old.channel_values, new.channel_values, old, new)
    for name, a, b in (
        ("channel_versions", old.channel_versions, new.channel_versions),
        ("versions_seen", old.versions_seen, new.versions_seen),
    ):
        for sub in sorted(a.keys() | b.keys()):
            if a.get(sub) != b.get(sub):
                fields.append({"field": f"{name}.{sub}", "old": a.get(sub), "new": b.get(sub)})
    fields += _paired_fields(
        "checkpoint", old.other, new.other, _PLAIN_CHECKPOINT_KEYS, old, new
    )
    return fields


def _paired_fields(
    prefix: str,
    a: Mapping[str, tuple[str, Any]],
    b: Mapping[str, tuple[str, Any]],
    plain: frozenset[str],
    old: Fingerprint,
    new: Fingerprint,
) -> list[dict[str, Any]]:
    """Fields kept as (digest, shown): plain keys show their value, the rest a digest."""
    fields = []
    for key in sorted(a.keys() | b.keys()):
        a_pair, b_pair = a.get(key), b.get(key)
        if (a_pair and a_pair[0]) == (b_pair and b_pair[0]):
            continue
        path = f"{prefix}.{key}"
        slot = 1 if key in plain else 0
        entry = {
            "field": path,
            "old": a_pair[slot] if a_pair else None,
            "new": b_pair[slot] if b_pair else None,
        }
        fields.append(entry if key in plain else _with_values(entry, path, old, new))
    return fields


def _writes_detail(
    old: Fingerprint, new: Fingerprint, old_exact: bool, new_exact: bool
) -> dict[str, Any] | None:
    """Compare the ordered writes; with an inexact side, only what both can keep.

    An inexact (public-API) adapter keeps neither `task_path` nor the stored `idx`, so the
    comparison falls back to each task's writes in order: (task_id, channel, value digest).
    """
    exact = old_exact and new_exact
    a: list[tuple[Any, ...]]
    b: list[tuple[Any, ...]]
    keys: tuple[str, ...]
    if exact:
        a, b = list(old.writes), list(new.writes)
        keys = ("task_id", "task_path", "idx", "channel", "value")
        compared = "exact: (task_path, task_id, idx) order, channel and value digest"
    else:
        a, b = _per_task(old.writes), _per_task(new.writes)
        keys = ("task_id", "channel", "value")
        inexact = [s for s, e in (("old", old_exact), ("new", new_exact)) if not e]
        compared = (
            f"per task, in order: channel and value digest ({' and '.join(inexact)} "
            "store adapter is not exact: task_path and idx not compared)"
        )
    if a == b:
        return None
    # "order": the same writes (task, channel, value), ordered differently, e.g. a copy
    # that lost the task paths, so parallel branches now replay in task-id order.
    same_writes = sorted((x[0], x[-2], x[-1]) for x in a) == sorted((y[0], y[-2], y[-1]) for y in b)
    difference = "order" if same_writes else "content"
    fields = []
    for n, (x, y) in enumerate(zip_longest(a, b)):
        if x != y:
            entry = {
                "field": f"writes[{n}]",
                "old": dict(zip(keys, x)) if x else None,
                "new": dict(zip(keys, y)) if y else None,
            }
            fields.append(_with_write_values(entry, n, x, y, old, new, exact))
    detail = _fields_detail(fields)
    detail.update(
        {"difference": difference, "compared": compared, "count": {"old": len(a), "new": len(b)}}
    )
    return detail


def _per_task(writes: Iterable[tuple[str, str, int, str, str]]) -> list[tuple[str, str, str]]:
    by_task: dict[str, list[tuple[str, str, str]]] = {}
    for task_id, _path, _idx, channel, value in writes:
        by_task.setdefault(task_id, []).append((task_id, channel, value))
    return [w for task in sorted(by_task) for w in by_task[task]]


def _with_write_values(entry, n, x, y, old, new, exact) -> dict[str, Any]:
    if old.values is None or new.values is None:
        return entry
    # Values were captured by stored position; map a compared write back to it.
    entry["old_value"] = _write_value(old, x, exact)
    entry["new_value"] = _write_value(new, y, exact)
    return entry


def _write_value(fp: Fingerprint, compared: tuple | None, exact: bool) -> Any:
    if compared is None or fp.values is None:
        return None
    for n, w in enumerate(fp.writes):
        if (exact and w == compared) or (not exact and (w[0], w[3], w[4]) == compared):
            return fp.values.get(f"writes[{n}]")
    return None
