"""A LangGraph checkpointer on plain Redis commands: Redis OSS 6.2+, Valkey, Redis Cluster.

No RedisJSON or RediSearch: hashes, sorted sets and Lua scripts only. `RedisSaver` (sync,
``redis.Redis`` or ``redis.cluster.RedisCluster``) and `AsyncRedisSaver` (``redis.asyncio``)
are thin shells over `BaseRedisSaver` (redis_base.py), which holds the key layout, the
encoding and every decision; the Lua scripts are in redis_lua.py.

    with open_redis_saver("redis://:secret@127.0.0.1:6379/0?ttl=86400") as saver:
        graph = builder.compile(checkpointer=saver)

    async with aopen_redis_saver("redis+cluster://10.0.0.1:7000,10.0.0.2:7000") as saver:
        ...

URL forms (the stores helper's `open_saver(url)` calls these):

- ``redis://[[username]:password@]host[:port][/db]``  one server (port 6379, db 0 by default)
- ``rediss://...``                                    the same over TLS
- ``redis+cluster://[[username]:password@]host:port,host:port,...``  a Redis Cluster: any
  reachable subset of its nodes; the rest are discovered (database 0 only)
- ``rediss+cluster://...``                            a cluster over TLS

Percent-encode special characters in the username and password. Query parameters, also
accepted as keyword arguments (which win):

- ``prefix``     key prefix (default ``dualsaver``); savers with different prefixes share a
                 server without seeing each other's threads
- ``ttl``        seconds a thread lives after its last write (every put / put_writes
                 refreshes it, so an active conversation never expires); default: forever.
                 Use one TTL for every saver on a prefix.
- ``pool_size``  maximum connections (per node on a cluster); standalone pools block when
                 all are busy (default 50)
- ``socket_timeout``, ``socket_connect_timeout``, ``client_name``, ``ssl_cert_reqs``,
  ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``: passed to
  redis-py.

A bad URL raises ``ValueError``, an unreachable server ``ConnectionError``; both are one
line and show the URL with its password replaced by ``***``.

Guarantees: a put is one Lua script (atomic; with ``appendonly yes`` and
``appendfsync always`` an acknowledged checkpoint survives a server crash). All keys of a
thread share one hash slot. Threads are enumerated from an index, never with KEYS.
``list(None)`` walks threads in ascending id order, each newest first (not globally newest
first). Metadata filters compare top-level keys for equality, like InMemorySaver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from dualsaver.stores.redis_base import BaseRedisSaver
from dualsaver.stores.redis_io import AsyncDriver, SyncDriver
from dualsaver.stores.redis_url import async_client, connection_error, parse_redis_url, sync_client

__all__ = ["AsyncRedisSaver", "BaseRedisSaver", "RedisSaver", "aopen_redis_saver", "open_redis_saver"]


class RedisSaver(BaseRedisSaver):
    """Sync checkpointer on a ``redis.Redis`` or ``redis.cluster.RedisCluster`` client
    (created with ``decode_responses=False``, the default)."""

    def __init__(
        self,
        client: Any,
        *,
        serde: SerializerProtocol | None = None,
        prefix: str = "dualsaver",
        ttl: float | None = None,
    ) -> None:
        from redis.cluster import RedisCluster

        super().__init__(serde=serde, prefix=prefix, ttl=ttl, cluster=isinstance(client, RedisCluster))
        self.client = client
        self._io = SyncDriver(client, self.cluster)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._io.run(self._plan_get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self._io.iterate(self._plan_list(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._io.run(self._plan_put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._io.run(self._plan_put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._io.run(self._plan_delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) of these runs, in every thread.

        Visits every thread of the prefix, so it costs a pass over the whole store."""
        self._io.run(self._plan_delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write; what the target already has is kept."""
        self._io.run(self._plan_copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`"keep_latest"`: keep the newest checkpoint of each namespace with its writes
        and the blobs it references (its parent link is cleared when the parent goes);
        refuses threads that use a DeltaChannel. `"delete"`: delete the threads.
        Each thread is pruned atomically."""
        self._io.run(self._plan_prune(thread_ids, strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._io.run(self._plan_delta_history(config, channels))

    def native_store(self) -> Any:
        """Store-native access for the backfill and the check (a `NativeStore`)."""
        from dualsaver.stores.redis_native import RedisNativeStore

        return RedisNativeStore(self)


class AsyncRedisSaver(BaseRedisSaver):
    """Async checkpointer on a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.

    Its sync methods may be called from other threads while its event loop runs (as
    graph.invoke does from a worker thread), like AsyncPostgresSaver's."""

    def __init__(
        self,
        client: Any,
        *,
        serde: SerializerProtocol | None = None,
        prefix: str = "dualsaver",
        ttl: float | None = None,
    ) -> None:
        from redis.asyncio.cluster import RedisCluster

        super().__init__(serde=serde, prefix=prefix, ttl=ttl, cluster=isinstance(client, RedisCluster))
        self.client = client
        self._io = AsyncDriver(client, self.cluster)
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._io.run(self._plan_get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for tup in self._io.iterate(self._plan_list(config, filter, before, limit)):
            yield tup

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._io.run(self._plan_put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._io.run(self._plan_put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await self._io.run(self._plan_delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._io.run(self._plan_delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._io.run(self._plan_copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._io.run(self._plan_prune(thread_ids, strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._io.run(self._plan_delta_history(config, channels))

    def native_store(self) -> Any:
        """Store-native access for the backfill and the check (an `AsyncNativeStore`)."""
        from dualsaver.stores.redis_native import AsyncRedisNativeStore

        return AsyncRedisNativeStore(self)

    # -- sync bridges, for callers on another thread --------------------------------------

    def _bridge(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or running is self.loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "Synchronous calls to AsyncRedisSaver are only allowed from a thread other "
                "than its event loop's; use the async methods (aget_tuple, ainvoke, ...)."
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._bridge(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._bridge(collect())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._bridge(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._bridge(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._bridge(self.adelete_thread(thread_id))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._bridge(self.aget_delta_channel_history(config=config, channels=channels))


_CONNECT_ERRORS: tuple[type[BaseException], ...]
try:
    from redis.exceptions import RedisClusterException, RedisError

    _CONNECT_ERRORS = (RedisError, RedisClusterException, OSError)
except ImportError:  # pragma: no cover - redis is an optional dependency
    _CONNECT_ERRORS = (OSError,)


@contextmanager
def open_redis_saver(url: str, *, serde: SerializerProtocol | None = None, **options: Any) -> Iterator[RedisSaver]:
    """Open a `RedisSaver` from a URL (forms in the module docstring); close it on exit."""
    target = parse_redis_url(url, **options)
    client = None
    try:
        client = sync_client(target)
        client.ping()
    except _CONNECT_ERRORS as err:
        if client is not None:
            client.close()
        raise connection_error(target, err) from None
    try:
        yield RedisSaver(client, serde=serde, **target.saver)
    finally:
        client.close()
        if not target.cluster:
            client.connection_pool.disconnect()


@asynccontextmanager
async def aopen_redis_saver(
    url: str, *, serde: SerializerProtocol | None = None, **options: Any
) -> AsyncIterator[AsyncRedisSaver]:
    """Open an `AsyncRedisSaver` from a URL (forms in the module docstring)."""
    target = parse_redis_url(url, **options)
    client = None
    try:
        client = async_client(target)
        await client.ping()
    except _CONNECT_ERRORS as err:
        if client is not None:
            await client.aclose()
        raise connection_error(target, err) from None
    try:
        yield AsyncRedisSaver(client, serde=serde, **target.saver)
    finally:
        await client.aclose()
        if not target.cluster:
            await client.connection_pool.disconnect()
