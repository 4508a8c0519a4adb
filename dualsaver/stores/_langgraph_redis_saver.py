"""Opening the official LangGraph Redis saver (langgraph-checkpoint-redis) from a store URL.

    redis+langgraph://[[user]:password@]host:port/db      one server (rediss+langgraph: TLS)
    redis+sentinel+langgraph://[:password@]host:26379,host:26380/SERVICE/DB

The client is built by `dualsaver.redis.url` (one parser, one redaction, Sentinel, RESP2 as
the saver's RediSearch queries expect) and handed to `RedisSaver(redis_client=...)` /
`AsyncRedisSaver(redis_client=...)`. Query options: the saver's ``ttl`` dict as
``default_ttl`` (minutes) and ``refresh_on_read``, its ``checkpoint_prefix`` and
``checkpoint_write_prefix``, ``pool_size``, the socket and TLS options, and ``wait`` /
``wait_timeout``.

``wait=N``: the official saver writes over several connections, so a put is followed by a
fence (``INCR`` of ``<checkpoint_prefix>_wait_fence``) and ``WAIT N`` on the fence's
connection; replication is one ordered stream, so the replicas holding the fence hold every
write the put made before it. Fewer than N replicas in time: `NotReplicated`, and the put is
not acknowledged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langgraph.checkpoint.redis import RedisSaver
from langgraph.checkpoint.redis.aio import AsyncRedisSaver

from dualsaver.errors import StoreURLError
from dualsaver.redis.ops import replicated
from dualsaver.redis.url import RedisTarget, aconnected, connected, parse_redis_url

PREFIX_OPTIONS = ("checkpoint_prefix", "checkpoint_write_prefix")


def _target(url: str, serde: Any) -> RedisTarget:
    target = parse_redis_url(url)
    if not target.langgraph:
        raise StoreURLError(f"{target.where}: not a +langgraph URL")
    if target.cluster:
        raise StoreURLError(f"{target.where}: the official saver is opened here on one server or via Sentinel")
    if serde is not None:
        raise StoreURLError(f"{target.where}: the official Redis saver keeps its own serializer (JSON documents)")
    target.client.setdefault("protocol", 2)  # RedisVL's search replies are parsed as RESP2
    return target


def _saver_kwargs(target: RedisTarget) -> dict[str, Any]:
    options = dict(target.saver)
    kwargs = {k: options.pop(k) for k in PREFIX_OPTIONS if k in options}
    if options:  # default_ttl, refresh_on_read: the saver's `ttl` dict
        kwargs["ttl"] = options
    return kwargs


class _Fenced:
    """What a saver opened with ``wait`` adds: the fence after each write. A mixin: `_redis` and
    `_checkpoint_prefix` are the official saver's it is mixed into (hence the ignores)."""

    wait: int = 0
    wait_ms: int = 1000

    def _fence_key(self) -> str:
        return f"{self._checkpoint_prefix}_wait_fence"  # type: ignore[attr-defined]

    def _replicated(self) -> None:
        pipe = self._redis.pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.incr(self._fence_key())
        pipe.execute_command("WAIT", self.wait, self.wait_ms)
        replicated(pipe.execute()[-1], self.wait, self.wait_ms)

    async def _areplicated(self) -> None:
        pipe = self._redis.pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.incr(self._fence_key())
        pipe.execute_command("WAIT", self.wait, self.wait_ms)
        replicated((await pipe.execute())[-1], self.wait, self.wait_ms)


class FencedRedisSaver(_Fenced, RedisSaver):
    """The official `RedisSaver`, acknowledging a write once `wait` replicas hold it."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        config = super().put(*args, **kwargs)
        self._replicated()
        return config

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        super().put_writes(*args, **kwargs)
        self._replicated()


class FencedAsyncRedisSaver(_Fenced, AsyncRedisSaver):
    """The official `AsyncRedisSaver`, acknowledging a write once `wait` replicas hold it
    (its sync methods run these on its loop)."""

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        config = await super().aput(*args, **kwargs)
        await self._areplicated()
        return config

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        await super().aput_writes(*args, **kwargs)
        await self._areplicated()


def _make(plain: type, fenced: type, client: Any, target: RedisTarget) -> Any:
    saver = (fenced if target.wait else plain)(redis_client=client, **_saver_kwargs(target))
    if target.wait:
        saver.wait, saver.wait_ms = target.wait, max(1, int(target.wait_timeout * 1000))
    return saver


@contextmanager
def open_langgraph_redis_saver(url: str, *, serde: Any = None) -> Iterator[Any]:
    """The official `RedisSaver` on `url` (not set up: the opener decides); the client is
    closed on exit."""
    target = _target(url, serde)
    with connected(target) as client:
        yield _make(RedisSaver, FencedRedisSaver, client, target)


@asynccontextmanager
async def aopen_langgraph_redis_saver(url: str, *, serde: Any = None) -> AsyncIterator[Any]:
    """The official `AsyncRedisSaver` on `url`; see `open_langgraph_redis_saver`."""
    target = _target(url, serde)
    async with aconnected(target) as client:
        saver = _make(AsyncRedisSaver, FencedAsyncRedisSaver, client, target)
        try:
            yield saver
        finally:  # RedisVL would close the client again from its indexes: it is ours to close
            saver.checkpoints_index._redis_client = None
            saver.checkpoint_writes_index._redis_client = None


def has_index(saver: Any) -> bool:
    """Whether the store holds the saver's checkpoint index (a source must)."""
    return _listed(saver, saver._redis.execute_command("FT._LIST"))


async def ahas_index(saver: Any) -> bool:
    return _listed(saver, await saver._redis.execute_command("FT._LIST"))


def _listed(saver: Any, names: Any) -> bool:
    found = {n.decode() if isinstance(n, bytes) else str(n) for n in names or ()}
    return saver._checkpoint_prefix in found
