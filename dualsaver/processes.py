"""What every job run as N processes shares (the backfill's copy, the check): how the
processes start, that they die with their parent, and how their errors come back.

- start: forked from a fork server that imported dualsaver once (it holds no connection and
  no thread, so forking it is safe, and a process is ready in milliseconds instead of
  importing everything again); spawned where there is no fork server. Forking the caller
  itself is unsafe: its open connections and threads would be shared;
- a process whose parent dies (SIGKILL, SIGTERM) exits at once, so a killed job leaves
  nothing working behind it (`exit_with_parent`, called first thing in each process);
- the parent hears the processes' reports as they come, and learns of one that exited
  without its last (`receive`);
- an exception raised in a process crosses back to the parent as itself when it pickles,
  else as the caller's error type naming it (`portable`).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from typing import Any

from dualsaver.errors import describe_error

POLL = 0.2  # seconds between two looks at the processes
SILENT_POLLS = 3  # a process that exited is given this many polls for its last report to arrive

# What the fork server imports once, so that no process imports it again: the modules the
# processes run; the caller's main module is run again in each process (as `spawn` does,
# unless it ran with -m), and `dualsaver`'s own command imports dualsaver.cli; opening the
# stores imports psycopg and every installed backend's saver (the adapters' table), some
# 0.15 s of CPU a process (measured), 6 us a checkpoint at 52k over two processes; decoding
# the first checkpoint that holds a message, a `Send` or an interrupt imports their modules
# (langgraph.types brings langchain_core's runnables and langsmith): 0.5 s a process
# (measured, the check). One not installed is skipped. (Names, not imports: this module
# sits below the ones it names.)
PRELOAD = (
    "dualsaver.migrate._processes", "dualsaver.checker._processes", "dualsaver.cli", "psycopg", "psycopg_pool",
    "langgraph.checkpoint.memory", "langgraph.checkpoint.sqlite.aio", "langgraph.checkpoint.postgres.aio",
    "langgraph.checkpoint.redis", "langchain_core.messages", "langgraph.types",
)


def process_count(processes: Any) -> int:
    """`processes` as given, or a `ValueError` that says what is wrong."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a whole number >= 1, not {processes!r}")
    return processes


def start_context() -> Any:
    """How the processes start: from the fork server (see the module docstring), else spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def warm_up() -> None:
    """Start the fork server now (it imports `PRELOAD`, half a second, while the caller opens
    its stores), if it is not running yet."""
    if start_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def exit_with_parent() -> None:
    """In a process: exit as soon as the parent is gone (it keeps the job's record and its
    result: nothing this process does after it died would be recorded or reported)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])  # readable once the parent's end of the pipe closed: it died
        os._exit(3)

    threading.Thread(target=watch, name="dualsaver-parent-watch", daemon=True).start()


def receive(
    events: Any, procs: list[Any], lost: Callable[[int, int], BaseException], *,
    between: Callable[[], None] = lambda: None,
) -> Iterator[tuple[str, int, Any]]:
    """The reports (kind, process index, payload) the processes put on `events`, as they
    come, until each has sent its last ("result"). One that exited without it raises
    `lost(index, exit code)`; `between` is called before each wait (to raise what else failed)."""
    pending = dict(enumerate(procs))
    silent = dict.fromkeys(pending, 0)
    while pending:
        between()
        try:
            kind, index, payload = events.get(timeout=POLL)
        except queue.Empty:
            for index, proc in pending.items():
                if proc.exitcode is not None:
                    silent[index] += 1
                    if silent[index] > SILENT_POLLS:
                        raise lost(index, proc.exitcode) from None
            continue
        if kind == "result":
            del pending[index]
        yield kind, index, payload


def portable(exc: BaseException, wrap: Callable[[str], BaseException]) -> BaseException:
    """The exception itself when it survives the trip to the parent, else `wrap` of its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return wrap(describe_error(exc))
    return exc
