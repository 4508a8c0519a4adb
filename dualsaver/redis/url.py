"""Parse a Redis store URL and build redis-py clients from it (forms: see the package docstring).

Errors are one line and never contain the password: the URL is shown redacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from dualsaver.errors import StoreUnreachable, StoreURLError, describe_error
from dualsaver.redact import redact

SCHEMES = {
    "redis": (False, False),
    "rediss": (True, False),
    "redis+cluster": (False, True),
    "rediss+cluster": (True, True),
}
SAVER_OPTIONS = {"prefix": str, "ttl": float, "pool_size": int}
FLOAT_CLIENT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
STR_CLIENT_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "client_name")
BOOL_CLIENT_OPTIONS = ("ssl_check_hostname",)


@dataclass
class RedisTarget:
    """What a URL names: servers, credentials, TLS, and the saver's options."""

    tls: bool
    cluster: bool
    hosts: list[tuple[str, int]]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    saver: dict[str, Any] = field(default_factory=dict)  # prefix, ttl
    pool_size: int | None = None
    client: dict[str, Any] = field(default_factory=dict)  # extra redis-py kwargs

    @property
    def where(self) -> str:
        """Host list and scheme, safe to print."""
        kind = ("rediss" if self.tls else "redis") + ("+cluster" if self.cluster else "")
        return f"{kind}://" + ",".join(f"{h}:{p}" for h, p in self.hosts)


def parse_redis_url(url: str, **overrides: Any) -> RedisTarget:
    """Parse `url`; keyword `overrides` win over query parameters."""

    def bad(reason: str) -> StoreURLError:
        return StoreURLError(f"invalid Redis URL {redact(url)}: {reason}")

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise bad(f"scheme must be one of {', '.join(SCHEMES)}")
    tls, cluster = SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None  # as redis-py reads it: no colon, no password
        password = unquote(pw) if colon else None
    hosts = [_host(h, bad) for h in hostlist.split(",") if h]
    if not hosts:
        raise bad("no host")
    if len(hosts) > 1 and not cluster:
        raise bad("several hosts need the redis+cluster:// scheme")
    db = 0
    if path.strip("/"):
        try:
            db = int(path.strip("/"))
        except ValueError:
            raise bad("the path must be a database number") from None
        if cluster and db != 0:
            raise bad("Redis Cluster only has database 0")
    target = RedisTarget(tls, cluster, hosts, db, username, password)
    options: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    options.update(overrides)
    for key, value in options.items():
        try:
            _apply(target, key, value)
        except (TypeError, ValueError):
            raise bad(f"bad value for option {key!r}") from None
        except KeyError:
            raise bad(f"unknown option {key!r}") from None
    return target


def _host(text: str, bad: Any) -> tuple[str, int]:
    if text.startswith("["):  # IPv6 literal
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return unquote(host), int(port) if port else 6379
    except ValueError:
        raise bad(f"bad port in {text!r}") from None


def _apply(target: RedisTarget, key: str, value: Any) -> None:
    if value is None:
        return
    if key == "pool_size":
        target.pool_size = int(value)
        if target.pool_size < 1:
            raise ValueError(key)
    elif key in SAVER_OPTIONS:
        target.saver[key] = SAVER_OPTIONS[key](value)
    elif key in FLOAT_CLIENT_OPTIONS:
        target.client[key] = float(value)
    elif key in STR_CLIENT_OPTIONS:
        target.client[key] = str(value)
    elif key in BOOL_CLIENT_OPTIONS:
        target.client[key] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    else:
        raise KeyError(key)


def _common_kwargs(target: RedisTarget) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"username": target.username, "password": target.password, **target.client}
    if target.tls and target.cluster:
        kwargs["ssl"] = True
    return {k: v for k, v in kwargs.items() if v is not None}


def sync_client(target: RedisTarget) -> Any:
    import redis
    from redis import cluster

    return _client(target, redis, cluster)


def async_client(target: RedisTarget) -> Any:
    import redis.asyncio as aredis
    from redis.asyncio import cluster

    return _client(target, aredis, cluster)


def _client(target: RedisTarget, lib: Any, cluster_lib: Any) -> Any:
    """A client of redis-py's sync or async flavour (`lib`: `redis` or `redis.asyncio`),
    which offer the same classes under the same names."""
    kwargs = _common_kwargs(target)
    if target.cluster:
        if target.pool_size:
            kwargs["max_connections"] = target.pool_size  # per node
        nodes = [cluster_lib.ClusterNode(h, p) for h, p in target.hosts]
        return cluster_lib.RedisCluster(startup_nodes=nodes, **kwargs)
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
