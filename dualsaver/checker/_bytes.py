"""The check's fast path: when both stores use the same serializer configuration, compare
digests of the bytes they hold, and decode only the threads whose digests differ.

Two stores written through one serializer configuration hold the same bytes for the same
value, once each store's layout is undone. A store that can say so reads a batch of threads
at once as one digest per checkpoint (`read_threads(ids, prints=True)`: a `Printed` of its
parent, plain fields, channel values as stored, metadata and each write's stored bytes; see
`dualsaver.stores._prints`), in a round trip or two, nothing decoded beyond what each store
keeps decoded.

Equal digests mean equal values (the same bytes decode alike through the same serializer),
so a thread whose digests all agree is clean. Unequal digests do not mean unequal values
(the same value may be encoded two ways: a dict's key order, a float written as an integer,
an older library), so such a thread, and a thread with a row that did not reduce to a digest,
is read again decoded and diffed by meaning (`_diff`): only that decides what is reported,
and how. The byte path can therefore only save work, never change a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dualsaver.checker._diff import ThreadDiff
from dualsaver.stores.native import Printed, StoredCheckpoint, Unreadable

READ_OPTIONS = {"prints": True}  # how the byte path reads a store (`read_threads`)


def reads_bytes(store: Any) -> bool:
    """Whether a native store reads digests of its stored bytes (see the module docstring):
    its `prints_key` names the serializer configuration they were written with."""
    return getattr(store, "prints_key", None) is not None and (
        hasattr(store, "read_threads") or hasattr(store, "aread_threads")
    )


def compares_bytes(old: Any, new: Any) -> bool:
    """Both stores read as bytes, written through the same serializer configuration."""
    return reads_bytes(old) and reads_bytes(new) and old.prints_key == new.prints_key


@dataclass(slots=True)
class ByteSide:
    """One store's view of one thread, as digests by (checkpoint_ns, checkpoint_id); `failed`
    when a row (or the batch) did not reduce to a digest: the decoded path says what is wrong."""

    prints: dict[tuple[str, str], bytes] = field(default_factory=dict)
    writes: int = 0
    failed: bool = False

    def add(self, item: Printed | StoredCheckpoint | Unreadable) -> None:
        if type(item) is not Printed:
            self.failed = True
            return
        self.prints[(item.checkpoint_ns, item.checkpoint_id)] = item.digest
        self.writes += item.writes


def agreed(thread_id: str, old: ByteSide, new: ByteSide) -> ThreadDiff | None:
    """The clean diff of a thread whose digests agree in both stores; None: decide it decoded."""
    if old.failed or new.failed or old.prints != new.prints:
        return None
    n = len(old.prints)
    return ThreadDiff(thread_id, [], n, n, n, old.writes, new.writes, by_bytes=True)
