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
- ``redis+sentinel://[[username]:password@]host:26379,host:26380/SERVICE[/db]``  the master
  of SERVICE, found through these sentinels (and found again after a failover); the
  password serves the sentinels and the master (``rediss+sentinel://``: TLS)

Percent-encode special characters in the username and password. Query parameters, also
accepted as keyword arguments (which win):

- ``prefix``     key prefix (default ``dualsaver``); savers with different prefixes share a
                 server without seeing each other's threads
- ``ttl``        seconds a thread lives after its last write (every put / put_writes
                 refreshes it, so an active conversation never expires); default: forever.
                 Use one TTL for every saver on a prefix.
- ``pool_size``  maximum connections (per node on a cluster); standalone pools block when
                 all are busy (default 50)
- ``wait``       replicas that must hold a put / put_writes before it returns (``WAIT``
                 in the same pipeline); fewer within ``wait_timeout`` seconds (default 1)
                 raises ``NotReplicated``: not acknowledged. Not on a cluster.
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

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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

from dualsaver.redis._io import AsyncRedisIo, RedisIo, Within
from dualsaver.redis.aio import AsyncRedisSaver, aopen_redis_saver
from dualsaver.redis.base import BaseRedisSaver
from dualsaver.redis.url import connected, for_own_saver, parse_redis_url
from dualsaver.sansio import Targets, run, stream

__all__ = [
    "AsyncRedisIo",
    "AsyncRedisSaver",
    "BaseRedisSaver",
    "RedisIo",
    "RedisSaver",
    "aopen_redis_saver",
    "open_redis_saver",
]


class RedisSaver(BaseRedisSaver):
    """Sync checkpointer on a ``redis.Redis`` or ``redis.cluster.RedisCluster`` client
    (created with ``decode_responses=False``, the default)."""

    def __init__(
        self, client: Any, *, serde: SerializerProtocol | None = None, prefix: str = "dualsaver",
        ttl: float | None = None, wait: int = 0, wait_timeout: float = 1.0,
    ) -> None:
        from redis.cluster import RedisCluster

        super().__init__(serde=serde, prefix=prefix, ttl=ttl, cluster=isinstance(client, RedisCluster),
                         wait=wait, wait_timeout=wait_timeout)
        self.client = client
        self._io = Targets(redis=RedisIo(client, self.cluster))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return run(self._plan_get_tuple(config), self._io)

    def bounds_reads_within(self, timeout: float | None) -> bool:
        """One server or a sentinel-watched master over a pool (see `RedisIo.script_within`)
        whose connections are made within `timeout` (the URL's `socket_connect_timeout`):
        a read that must connect again cannot wait longer than that."""
        if timeout is None or self.cluster or getattr(self.client, "connection", None) is not None:
            return False
        connect = self.client.connection_pool.connection_kwargs.get("socket_connect_timeout")
        return connect is not None and connect <= timeout

    def get_tuple_within(self, config: RunnableConfig, timeout: float | None) -> CheckpointTuple | None:
        """`get_tuple`, raising `SecondaryTimeout` when Redis has not begun to answer within
        `timeout` seconds, on the caller's thread (None: no bound). Bounded only where
        `bounds_reads_within(timeout)` (else it is `get_tuple`)."""
        if timeout is None or not self.bounds_reads_within(timeout):
            return self.get_tuple(config)
        return run(self._plan_get_tuple(config), Targets(redis=Within(self._io.targets["redis"], timeout)))

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        return stream(self._plan_list(config, filter, before, limit), self._io)

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        return run(self._plan_put(config, checkpoint, metadata, new_versions), self._io)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        run(self._plan_put_writes(config, writes, task_id, task_path), self._io)

    def delete_thread(self, thread_id: str) -> None:
        run(self._plan_delete_thread(thread_id), self._io)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) of these runs, in every thread.

        Visits every thread of the prefix, so it costs a pass over the whole store."""
        run(self._plan_delete_for_runs(run_ids), self._io)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write; what the target already has is kept."""
        run(self._plan_copy_thread(source_thread_id, target_thread_id), self._io)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`"keep_latest"`: keep the newest checkpoint of each namespace with its writes
        and the blobs it references (its parent link is cleared when the parent goes);
        refuses threads that use a DeltaChannel. `"delete"`: delete the threads.
        Each thread is pruned atomically."""
        run(self._plan_prune(thread_ids, strategy), self._io)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return run(self._plan_delta_history(config, channels), self._io)


@contextmanager
def open_redis_saver(url: str, *, serde: SerializerProtocol | None = None, **options: Any) -> Iterator[RedisSaver]:
    """Open a `RedisSaver` from a URL (forms in the module docstring); close it on exit."""
    target = for_own_saver(parse_redis_url(url, **options))
    with connected(target) as client:
        yield RedisSaver(client, serde=serde, wait=target.wait, wait_timeout=target.wait_timeout, **target.saver)
