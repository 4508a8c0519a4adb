"""A pipeline of `ops` calls on one connection, packed in C: what `_io` sends off-cluster,
a single script call (a put, a read) included.

redis-py's pipeline passes every argument of every command through its encoder in Python
(a generator step, an encoder call, a chain of isinstance checks) before hiredis packs
them, and asks `SCRIPT EXISTS` before each pipeline that runs a script. A backfilled
checkpoint is one script call of some 27 arguments: that cost 39 us of the client's CPU a
checkpoint, more than encoding the checkpoint itself (`benchmarks/bench_backfill_redis.py`),
and a put's write called alone 40 us more than here. Here the commands go to hiredis's
`pack_command` as they are (str, bytes, int and float, as ours are), one payload is sent,
and each reply is read in order by the connection (its parser, its error types: a
Sentinel-managed connection still detects a failover); a script the server lost (NOSCRIPT)
is loaded and its calls sent again. Replies come as the server sends them: none of the
calls sent this way has a response callback in redis-py (scripts, the official saver's
copy script among them, EXISTS, ZRANGE, WAIT, PTTL).

What is shared by the sync and async shells of `_io` lives here: the payload, the reading
of one reply, and what to do once all replies are in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from redis.exceptions import NoScriptError, ResponseError

from dualsaver.sansio import Call


def pack_in_python(args: Sequence[Any]) -> bytes:
    """One command in the Redis protocol, as hiredis's `pack_command` packs it (str as UTF-8,
    int and float as their repr): for redis-py installed without hiredis."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode() if isinstance(arg, str) else repr(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _packer() -> Callable[[Any], bytes]:
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover - the redis extra installs hiredis
        return pack_in_python
    return cast(Callable[[Any], bytes], pack_command)


pack_command = _packer()


def command_args(call: Call, scripts: Mapping[str, Any]) -> tuple[Any, ...]:
    """The Redis command a `script` or `command` call (`dualsaver.redis.ops`) stands for."""
    if call.method == "script":
        name, keys, args = call.args
        return ("EVALSHA", scripts[name].sha, len(keys), *keys, *args)
    return call.args


def packed(calls: Sequence[Call], scripts: Mapping[str, Any]) -> bytes:
    """The calls in the Redis protocol, back to back."""
    return b"".join(pack_command(command_args(call, scripts)) for call in calls)


def reply_or_error(read: Any) -> Any:
    """One reply (`read()`), an error reply as its exception: the replies after it are read
    all the same, so the connection stays in step."""
    try:
        return read()
    except ResponseError as error:
        return error


async def areply_or_error(read: Any) -> Any:
    """`reply_or_error`, awaited."""
    try:
        return await read()
    except ResponseError as error:
        return error


def unloaded(replies: Sequence[Any]) -> list[int]:
    """Where the server did not know the script (it restarted, or SCRIPT FLUSH): to send again
    once it is loaded. A script that failed to run is not sent again."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]


def lost_scripts(calls: Sequence[Call], again: Sequence[int]) -> set[str]:
    """The scripts to load before the calls at `again` (`unloaded`) are sent again."""
    return {calls[i].args[0] for i in again}


def merged(replies: list[Any], again: Sequence[int], resent: Sequence[Any]) -> list[Any]:
    """The replies with those of the calls sent again in their places."""
    for i, reply in zip(again, resent):
        replies[i] = reply
    return replies


def settled(replies: list[Any]) -> list[Any]:
    """The replies, or the first error among them raised (as redis-py's pipeline does)."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies
