"""Carry out the calls of `ops` with a sync or an async redis-py client (the `sansio`
target "redis"). The two differ only in `await`.

On Redis Cluster, redis-py refuses EVALSHA inside a cluster pipeline, so a sync batch is
split by node and each part goes through a plain pipeline on that node's connection; a call
that comes back redirected (MOVED/ASK during resharding) is retried through the cluster
client. The async client sends a cluster batch as concurrent single calls instead. Off
cluster, a batch is packed in C and sent at once on one connection (`_wire`).
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Mapping
from typing import Any

from dualsaver.errors import SecondaryTimeout
from dualsaver.redis._lua import SCRIPTS
from dualsaver.redis.ops import route_key
from dualsaver.sansio import Call

ASYNC_CLUSTER_CONCURRENCY = 32


def require_binary(client: Any) -> None:
    """Values are bytes: a client that decodes responses would corrupt them."""
    try:
        encoder = client.get_encoder()
    except AttributeError:
        encoder = client.connection_pool.get_encoder()
    if encoder.decode_responses:
        raise ValueError("the Redis client must be created with decode_responses=False")


class _Client:
    """`scripts`: name -> Lua source (the checkpointer's by default). A caller that reads
    replies as text or bytes alike may pass `binary=False` to accept a decoding client."""

    def __init__(self, client: Any, cluster: bool, scripts: Mapping[str, str] = SCRIPTS, *,
        binary: bool = True) -> None:
        if binary:
            require_binary(client)
        self.client = client
        self.cluster = cluster
        self.scripts = {name: client.register_script(src) for name, src in scripts.items()}


class RedisIo(_Client):
    """The sync target: `script`, `command` and `pipeline` on a redis-py client."""

    def script(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...], client: Any = None) -> Any:
        if client is None and not self.cluster:  # packed in C too: a put's write is 40 us quicker
            return self._pipelined([Call("redis", "script", (name, keys, args))])[0]
        return self.scripts[name](keys=keys, args=args, client=client or self.client)

    def command(self, *args: Any, client: Any = None) -> Any:
        return (client or self.client).execute_command(*args)

    def _on(self, call: Call, client: Any) -> Any:
        return getattr(self, call.method)(*call.args, client=client)

    def pipeline(self, calls: list[Call]) -> list[Any]:
        if not calls:
            return []
        if not self.cluster:
            return self._pipelined(calls)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, call in enumerate(calls):
            node = self.client.get_node_from_key(route_key(call))
            by_node.setdefault(node.name, (node, []))[1].append(i)
        results: list[Any] = [None] * len(calls)
        for node, positions in by_node.values():
            pipe = self.client.get_redis_connection(node).pipeline(transaction=False)
            for i in positions:
                self._on(calls[i], pipe)
            for i, reply in zip(positions, pipe.execute(raise_on_error=False)):
                # A redirected or failed call is retried once through the cluster client,
                # which follows MOVED/ASK and raises a genuine error.
                results[i] = self._on(calls[i], self.client) if isinstance(reply, Exception) else reply
        return results

    def _pipelined(self, calls: list[Call]) -> list[Any]:
        """`calls` sent at once on one connection, packed in C (`_wire`); the calls of a
        script the server lost sent again once it is loaded."""
        from dualsaver.redis import _wire  # here: the package works without the redis extra

        replies = self._exchange(calls)
        if again := _wire.unloaded(replies):
            for name in _wire.lost_scripts(calls, again):
                self.scripts[name].sha = self.client.script_load(self.scripts[name].script)
            replies = _wire.merged(replies, again, self._exchange([calls[i] for i in again]))
        return _wire.settled(replies)

    def _exchange(self, calls: list[Call]) -> list[Any]:
        from dualsaver.redis import _wire

        payload = _wire.packed(calls, self.scripts)
        pool = self.client.connection_pool
        conn = _checkout(pool)

        def exchange() -> list[Any]:
            conn.send_packed_command([payload])
            return [_wire.reply_or_error(conn.read_response) for _ in calls]

        try:  # as the client retries its own commands (a dead pooled connection, say): all are idempotent
            return conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # replies may still be on their way: never read them as another's
            raise
        finally:
            pool.release(conn)

    def script_within(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...], timeout: float) -> Any:
        """`script`, raising `SecondaryTimeout` when the server has not begun to answer within
        `timeout` seconds: the wait is a poll of the socket on this thread (redis-py has no
        per-call bound; a thread to bound it costs more than the read it bounds). The reply,
        once begun, is read whole (as the client's socket_timeout allows). A connection found
        dead is replaced once, within the time left; a script the server lost is loaded again.
        A connection made anew waits as its connect timeout allows, a full pool as the pool
        does. One server or a sentinel-watched master over a pool only (see
        `RedisSaver.bounds_reads_within`)."""
        from redis import exceptions as redis_errors  # here: the package works without the redis extra

        deadline = time.monotonic() + timeout
        script, pool = self.scripts[name], self.client.connection_pool
        reconnected = loaded = False
        while True:
            conn = _checkout(pool)
            try:
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                if not _answering(conn, max(0.0, deadline - time.monotonic())):
                    conn.disconnect()  # its reply may still come: never read it as another's
                    raise SecondaryTimeout(f"no answer within {timeout}s")
                return conn.read_response()
            except redis_errors.NoScriptError:
                if loaded:
                    raise
                loaded = True
                script.sha = self.client.script_load(script.script)  # the server lost it (a restart)
            except redis_errors.ConnectionError:
                conn.disconnect()
                if reconnected or time.monotonic() >= deadline:
                    raise
                reconnected = True
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)


def _answering(conn: Any, timeout: float) -> bool:
    """Whether the reply to the command just sent on `conn` begins within `timeout` seconds:
    one poll of its socket. (redis-py's `can_read` polls again and may peek, to tell a socket
    the server closed from one with data; here a closed socket shows as readable, and reading
    it raises the ConnectionError that replaces the connection. Each poll lets go of the GIL,
    which a busy process takes a while to give back.)"""
    sock = getattr(conn, "_sock", None)
    if sock is None or (hasattr(sock, "pending") and sock.pending()):  # TLS: decrypted bytes wait above it
        return bool(conn.can_read(timeout))
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _checkout(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 names the command
        return pool.get_connection("EVALSHA")


async def _acheckout(pool: Any) -> Any:
    try:
        return await pool.get_connection()
    except TypeError:  # redis-py before 5.3 names the command
        return await pool.get_connection("EVALSHA")


class Within:
    """The target "redis" of a read bounded by `timeout` seconds: `script` is `script_within`."""

    __slots__ = ("io", "timeout")

    def __init__(self, io: RedisIo, timeout: float) -> None:
        self.io, self.timeout = io, timeout

    def script(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        return self.io.script_within(name, keys, args, self.timeout)


class AsyncRedisIo(_Client):
    """The async target: `ascript`, `acommand` and `apipeline` on a redis.asyncio client."""

    async def ascript(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        if not self.cluster:
            return (await self._apipelined([Call("redis", "script", (name, keys, args))]))[0]
        return await self.scripts[name](keys=keys, args=args)

    async def acommand(self, *args: Any) -> Any:
        return await self.client.execute_command(*args)

    async def apipeline(self, calls: list[Call]) -> list[Any]:
        if not calls:
            return []
        if self.cluster:
            gate = asyncio.Semaphore(ASYNC_CLUSTER_CONCURRENCY)

            async def one(call: Call) -> Any:
                async with gate:
                    return await getattr(self, "a" + call.method)(*call.args)

            return list(await asyncio.gather(*(one(call) for call in calls)))
        return await self._apipelined(calls)

    async def _apipelined(self, calls: list[Call]) -> list[Any]:
        """`RedisIo._pipelined`, awaited."""
        from dualsaver.redis import _wire

        replies = await self._aexchange(calls)
        if again := _wire.unloaded(replies):
            for name in _wire.lost_scripts(calls, again):
                self.scripts[name].sha = await self.client.script_load(self.scripts[name].script)
            replies = _wire.merged(replies, again, await self._aexchange([calls[i] for i in again]))
        return _wire.settled(replies)

    async def _aexchange(self, calls: list[Call]) -> list[Any]:
        from dualsaver.redis import _wire

        payload = _wire.packed(calls, self.scripts)
        pool = self.client.connection_pool
        conn = await _acheckout(pool)

        async def exchange() -> list[Any]:
            await conn.send_packed_command([payload])
            return [await _wire.areply_or_error(conn.read_response) for _ in calls]

        try:
            return await conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
