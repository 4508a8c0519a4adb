"""Parse a Redis store URL and build redis-py clients from it (forms: see the package docstring).

One grammar serves both Redis savers: ``redis`` or ``rediss`` (TLS), then at most one of
``+cluster`` / ``+sentinel``, then ``+langgraph`` for the official langgraph-checkpoint-redis
saver instead of dualsaver's own. A Sentinel URL lists sentinels and names the service:
``redis+sentinel://[:password@]host:26379,host:26380/SERVICE/DB``; the password is used
for the sentinels and for the master they point to.

Errors are one line and never contain the password: the URL is shown redacted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from dualsaver.errors import StoreUnreachable, StoreURLError, describe_error
from dualsaver.redact import redact

SCHEMES = tuple(
    f"{base}{topology}{flavour}"
    for base in ("redis", "rediss")
    for topology in ("", "+cluster", "+sentinel")
    for flavour in ("", "+langgraph")
)
SENTINEL_PORT = 26379
# Options of each saver; the official one's TTL is its own ``ttl`` dict (minutes).
SAVER_OPTIONS: dict[str, Callable[[str], Any]] = {"prefix": str, "ttl": float}
LANGGRAPH_OPTIONS: dict[str, Callable[[str], Any]] = {
    "default_ttl": float,
    "refresh_on_read": lambda v: _bool(v),
    "checkpoint_prefix": str,
    "checkpoint_write_prefix": str,
}
FLOAT_CLIENT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
STR_CLIENT_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "client_name")
BOOL_CLIENT_OPTIONS = ("ssl_check_hostname",)
DEFAULT_WAIT_TIMEOUT = 1.0  # seconds a put waits for its replicas when `wait` is set


@dataclass
class RedisTarget:
    """What a URL names: servers, credentials, TLS, and the saver's options."""

    tls: bool
    cluster: bool
    hosts: list[tuple[str, int]]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    saver: dict[str, Any] = field(default_factory=dict)  # prefix, ttl (or the official's)
    pool_size: int | None = None
    client: dict[str, Any] = field(default_factory=dict)  # extra redis-py kwargs
    sentinel: str | None = None  # the Sentinel service name; hosts are then sentinels
    langgraph: bool = False  # the official langgraph-checkpoint-redis saver
    wait: int = 0  # replicas that must acknowledge a write before it returns (WAIT)
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT

    @property
    def where(self) -> str:
        """Host list and scheme, safe to print."""
        kind = ("rediss" if self.tls else "redis") + ("+cluster" if self.cluster else "")
        kind += "+sentinel" if self.sentinel else ""
        service = f"/{self.sentinel}" if self.sentinel else ""
        return f"{kind}://" + ",".join(f"{h}:{p}" for h, p in self.hosts) + service


def parse_redis_url(url: str, **overrides: Any) -> RedisTarget:
    """Parse `url`; keyword `overrides` win over query parameters."""

    def bad(reason: str) -> StoreURLError:
        return StoreURLError(f"invalid Redis URL {redact(url)}: {reason}")

    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise bad("scheme must be redis or rediss, then +cluster or +sentinel, then +langgraph")
    parts = scheme.split("+")
    tls = parts[0] == "rediss"
    cluster, sentinel, langgraph = "cluster" in parts, "sentinel" in parts, "langgraph" in parts
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None  # as redis-py reads it: no colon, no password
        password = unquote(pw) if colon else None
    default_port = SENTINEL_PORT if sentinel else 6379
    hosts = [_host(h, bad, default_port) for h in hostlist.split(",") if h]
    if not hosts:
        raise bad("no host")
    if len(hosts) > 1 and not (cluster or sentinel):
        raise bad("several hosts need the redis+cluster:// or redis+sentinel:// scheme")
    segments = [p for p in path.split("/") if p]
    service = None
    if sentinel:
        if not segments:
            raise bad("a Sentinel URL names its service: redis+sentinel://host:26379/SERVICE/DB")
        service = unquote(segments.pop(0))
    if len(segments) > 1:
        raise bad("the path must be a database number")
    db = 0
    if segments:
        try:
            db = int(segments[0])
        except ValueError:
            raise bad("the path must be a database number") from None
        if cluster and db != 0:
            raise bad("Redis Cluster only has database 0")
    target = RedisTarget(tls, cluster, hosts, db, username, password, sentinel=service, langgraph=langgraph)
    options: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    options.update(overrides)
    for key, value in options.items():
        try:
            _apply(target, key, value)
        except (TypeError, ValueError):
            raise bad(f"bad value for option {key!r}") from None
        except KeyError:
            raise bad(f"unknown option {key!r}") from None
    if target.wait and cluster:
        raise bad("wait is for a master with replicas (standalone or Sentinel), not a cluster")
    return target


def for_own_saver(target: RedisTarget) -> RedisTarget:
    """`target`, refused when its URL names the official saver (``+langgraph``)."""
    if target.langgraph:
        raise StoreURLError(
            f"{target.where}: a +langgraph URL opens the official saver; open it with dualsaver.stores.open_saver"
        )
    return target


def _host(text: str, bad: Any, default_port: int) -> tuple[str, int]:
    if text.startswith("["):  # IPv6 literal
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return unquote(host), int(port) if port else default_port
    except ValueError:
        raise bad(f"bad port in {text!r}") from None


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def _apply(target: RedisTarget, key: str, value: Any) -> None:
    if value is None:
        return
    saver_options = LANGGRAPH_OPTIONS if target.langgraph else SAVER_OPTIONS
    if key == "pool_size":
        target.pool_size = int(value)
        if target.pool_size < 1:
            raise ValueError(key)
    elif key == "wait":
        target.wait = int(value)
        if target.wait < 0:
            raise ValueError(key)
    elif key == "wait_timeout":
        target.wait_timeout = float(value)
        if target.wait_timeout <= 0:
            raise ValueError(key)
    elif key in saver_options:
        target.saver[key] = saver_options[key](value)
    elif key in FLOAT_CLIENT_OPTIONS:
        target.client[key] = float(value)
    elif key in STR_CLIENT_OPTIONS:
        target.client[key] = str(value)
    elif key in BOOL_CLIENT_OPTIONS:
        target.client[key] = _bool(value)
    else:
        raise KeyError(key)


def _common_kwargs(target: RedisTarget) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"username": target.username, "password": target.password, **target.client}
    if target.tls and (target.cluster or target.sentinel):
        kwargs["ssl"] = True
    return {k: v for k, v in kwargs.items() if v is not None}


def sync_client(target: RedisTarget) -> Any:
    import redis
    from redis import cluster, sentinel

    return _client(target, redis, cluster, sentinel)


def async_client(target: RedisTarget) -> Any:
    import redis.asyncio as aredis
    from redis.asyncio import cluster, sentinel

    return _client(target, aredis, cluster, sentinel)


def _client(target: RedisTarget, lib: Any, cluster_lib: Any, sentinel_lib: Any) -> Any:
    """A client of redis-py's sync or async flavour (`lib`: `redis` or `redis.asyncio`),
    which offer the same classes under the same names."""
    kwargs = _common_kwargs(target)
    if target.cluster:
        if target.pool_size:
            kwargs["max_connections"] = target.pool_size  # per node
        nodes = [cluster_lib.ClusterNode(h, p) for h, p in target.hosts]
        return cluster_lib.RedisCluster(startup_nodes=nodes, **kwargs)
    if target.sentinel:
        # The master is found through the sentinels and found again after a failover: a
        # connection that fails reconnects to whichever server they name master then.
        asking = {k: v for k, v in kwargs.items() if k != "client_name"}
        sentinels = sentinel_lib.Sentinel(target.hosts, sentinel_kwargs=asking, **kwargs)
        return sentinels.master_for(
            target.sentinel, db=target.db, max_connections=target.pool_size or 50, **kwargs
        )
    host, port = target.hosts[0]
    if target.tls:
        kwargs["connection_class"] = lib.SSLConnection
    # A blocking pool makes threads wait for a free connection instead of failing.
    size = target.pool_size or 50
    pool = lib.BlockingConnectionPool(host=host, port=port, db=target.db, max_connections=size, **kwargs)
    return lib.Redis(connection_pool=pool)


CONNECT_ERRORS: tuple[type[BaseException], ...]
try:
    from redis.exceptions import RedisClusterException, RedisError

    CONNECT_ERRORS = (RedisError, RedisClusterException, OSError)
except ImportError:  # pragma: no cover - redis is an optional dependency
    CONNECT_ERRORS = (OSError,)


def connection_error(target: RedisTarget, err: BaseException) -> StoreUnreachable:
    """One line naming where and why, with the password masked in redis-py's text."""
    detail = describe_error(err, secrets=[target.password])
    return StoreUnreachable(f"cannot connect to {target.where}: {detail}")


@contextmanager
def connected(target: RedisTarget) -> Iterator[Any]:
    """A sync client for `target` that answered PING (else `StoreUnreachable`), closed on exit."""
    client = None
    try:
        client = sync_client(target)
        client.ping()
    except CONNECT_ERRORS as err:
        if client is not None:
            client.close()
        raise connection_error(target, err) from None
    try:
        yield client
    finally:
        client.close()
        if not target.cluster:
            client.connection_pool.disconnect()


@asynccontextmanager
async def aconnected(target: RedisTarget) -> AsyncIterator[Any]:
    """An async client for `target` that answered PING, closed on exit; see `connected`."""
    client = None
    try:
        client = async_client(target)
        await client.ping()
    except CONNECT_ERRORS as err:
        if client is not None:
            await client.aclose()
        raise connection_error(target, err) from None
    try:
        yield client
    finally:
        await client.aclose()
        if not target.cluster:
            await client.connection_pool.disconnect()
