"""Channel versions when old and new may use different version formats.

LangGraph takes `max()` over a checkpoint's channel versions and compares versions of a
channel, so every version of one thread must keep one type. The next version therefore
follows the type of the current one; only a brand-new channel takes the format of the
phase's primary store.
"""

from __future__ import annotations

import random
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver


def standard_next(current: Any) -> str:
    """The official savers' format: zero-padded counter, a dot, a random tie-breaker."""
    if current is None:
        counter = 0
    elif isinstance(current, str):
        counter = int(current.split(".")[0])
    else:
        counter = int(current)
    return f"{counter + 1:032}.{random.random():016}"


def next_version(current: Any, primary: BaseCheckpointSaver, other: BaseCheckpointSaver) -> Any:
    if current is None:
        return primary.get_next_version(None, None)
    for saver in (primary, other):
        try:
            candidate = saver.get_next_version(current, None)
        except (NotImplementedError, TypeError, ValueError):
            continue
        if type(candidate) is type(current) and candidate > current:
            return candidate
    # Neither store produces this thread's format: keep it ourselves.
    if isinstance(current, str):
        return standard_next(current)
    return current + 1
