"""How a long job (the backfill, the check) keeps CPython's cyclic garbage collector out of
its way.

Each batch builds thousands of small containers, which set off a young-generation
collection every 700 allocations, and every so often a full one that walks the whole heap
(every module, class and saver the process holds): some 15% of the backfill's CPU and
15-20% of the check's (measured: the check of 20k checkpoints 1.27 s, 1.09 s with the
collector held back). A collection walks every young object still alive, some 60,000 while
two batches are in flight, so at one every 100,000 allocations it still cost 1.5 us a
checkpoint; at one every million, a tenth of that. Cycles are still collected.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG = 1_000_000  # allocations between two young-generation collections while a job runs

_lock = threading.Lock()
_jobs = 0  # jobs running in this process (threads may run several at once)
_before: tuple[int, ...] = ()  # the thresholds the first of them found


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """The collector less often while the job runs (see the module docstring). The first of
    the jobs running at once sets the thresholds; the last one puts them back."""
    global _jobs, _before
    with _lock:
        if _jobs == 0:
            _before = gc.get_threshold()
            gc.set_threshold(max(_before[0], YOUNG), *_before[1:])
        _jobs += 1
    try:
        yield
    finally:
        with _lock:
            _jobs -= 1
            if _jobs == 0:
                gc.set_threshold(*_before)
