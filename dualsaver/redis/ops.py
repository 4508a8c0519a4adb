"""What a Redis checkpointer plan asks of Redis, as `sansio` calls on the target "redis".

    reply = yield script("read", keys, ("ids", member))     # one of the Lua scripts in _lua
    raw = yield command("ZRANGE", key, 0, -1)                # a plain command; args[1] is its key
    replies = yield pipeline([script(...), command(...)])    # sent together, replies in order

`_io.RedisIo` / `AsyncRedisIo` carry them out with a sync or an async redis-py client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dualsaver.errors import NotReplicated
from dualsaver.sansio import Call

PRUNE_STRATEGIES = ("keep_latest", "delete")
PAGE = 50  # checkpoints loaded per round trip by list()
THREAD_PAGE = 500  # thread ids read from the index per round trip
COPY_CHUNK = 100  # checkpoints per script call when copying


def script(name: str, keys: Sequence[str], args: Sequence[Any] = ()) -> Call:
    """Run the Lua script `name` (see _lua.SCRIPTS) on `keys` with `args`."""
    return Call("redis", "script", (name, tuple(keys), tuple(args)))


def command(*args: Any) -> Call:
    """A plain Redis command; args[1] is its key (used to route it on a cluster)."""
    return Call("redis", "command", args)


def pipeline(calls: Iterable[Call]) -> Call:
    """Send several script or command calls at once; the reply is the list of their replies."""
    return Call("redis", "pipeline", (list(calls),))


def route_key(call: Call) -> Any:
    """The key that decides which cluster node a script or command call goes to."""
    return call.args[1][0] if call.method == "script" else call.args[1]


def pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2]))


def chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def replicated(acknowledged: Any, wait: int, wait_ms: int) -> None:
    """Accept a write whose WAIT reply says `wait` replicas hold it; else `NotReplicated`
    (the write is not acknowledged: it may or may not survive a failover)."""
    if int(acknowledged) < wait:
        raise NotReplicated(f"the write reached {int(acknowledged)} of {wait} replica(s) within {wait_ms} ms")
