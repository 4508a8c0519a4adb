"""What a Redis checkpointer plan yields: script calls, commands, and items for the caller.

A plan (see redis_base) is a generator; redis_io drives it with a sync or async client.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PRUNE_STRATEGIES = ("keep_latest", "delete")
PAGE = 50  # checkpoints loaded per round trip by list()
THREAD_PAGE = 500  # thread ids read from the index per round trip
COPY_CHUNK = 100  # checkpoints per script call when copying


@dataclass(frozen=True, slots=True)
class Script:
    """A call of one of the scripts in redis_lua.SCRIPTS."""

    name: str
    keys: tuple[str, ...]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A plain Redis command; args[1] is its key (used to route it on a cluster)."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Emit:
    item: Any


Op = Script | Command
Plan = Generator[Any, Any, Any]


def _pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2]))


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
