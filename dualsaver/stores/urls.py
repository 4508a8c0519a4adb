"""Store URLs: parsing, and the redaction every message that names a URL goes through.

Accepted forms::

    sqlite:///relative/path.sqlite     sqlite:////absolute/path.sqlite     sqlite:///:memory:
    postgresql://user:password@host:5432/dbname?sslmode=disable          (also postgres://)
    redis://[:password@]host:6379/0    rediss://...    redis+cluster://host1:p1,host2:p2
    redis+sentinel://[:password@]host:26379,host:26380/SERVICE/0   (dualsaver's Redis saver)
    redis+langgraph://[:password@]host:6379/0   the official langgraph-checkpoint-redis saver
                         (also rediss+langgraph://, redis+sentinel+langgraph://.../SERVICE/0)
    memory://            a fresh InMemorySaver        memory://name   one shared per process
    python:package.module:factory   whatever saver factory() returns (or enters, when it
                         returns a context manager); copied through the public API

A URL never reaches a message, a log line or a report unredacted: `dualsaver.redact` replaces
the password (in the authority part and in a `password=` query parameter) with ``***``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from dualsaver.errors import StoreURLError
from dualsaver.redact import password_of, redact, scrub

__all__ = ["StoreURL", "StoreURLError", "parse_store_url", "password_of", "redact", "scrub"]


SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
LANGGRAPH_REDIS_SCHEMES = tuple(f"{s}+langgraph" for s in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"))
MEMORY_SCHEMES = ("memory",)
FACTORY_PREFIX = "python:"

KINDS = {
    **dict.fromkeys(SQLITE_SCHEMES, "sqlite"),
    **dict.fromkeys(POSTGRES_SCHEMES, "postgres"),
    **dict.fromkeys(REDIS_SCHEMES, "redis"),
    **dict.fromkeys(MEMORY_SCHEMES, "memory"),
    **dict.fromkeys(LANGGRAPH_REDIS_SCHEMES, "langgraph-redis"),
}

@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL. `target` is what the backend opens (a path, a DSN, a URL)."""

    url: str
    scheme: str
    kind: str  # sqlite | postgres | redis | langgraph-redis | memory | python
    target: str

    @property
    def redacted(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"StoreURL({self.redacted!r})"


def parse_store_url(url: str) -> StoreURL:
    """Parse and validate `url`; raises `StoreURLError` naming the redacted URL."""
    if not isinstance(url, str) or not url.strip():
        raise StoreURLError("empty store URL; expected e.g. sqlite:///path or postgresql://...")
    url = url.strip()
    if url.startswith(FACTORY_PREFIX):
        return StoreURL(url, "python", "python", _factory_target(url))
    if "://" not in url:
        raise StoreURLError(
            f"not a store URL: {redact(url)} (expected scheme://..., e.g. sqlite:///path.sqlite,"
            " postgresql://user@host/db, redis://host:6379, memory://, python:pkg.module:factory)"
        )
    scheme = url.split("://", 1)[0].lower()
    kind = KINDS.get(scheme)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise StoreURLError(f"unknown store scheme {scheme!r} in {redact(url)} (known: {known})")
    rest = url.split("://", 1)[1]
    if kind == "sqlite":
        return StoreURL(url, scheme, kind, _sqlite_path(url, rest))
    if kind == "memory":
        name = rest.strip("/")
        return StoreURL(url, scheme, kind, name)
    if kind == "postgres":
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise StoreURLError(f"bad PostgreSQL URL {redact(url)}: {scrub(exc, url)}") from None
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise StoreURLError(f"bad PostgreSQL URL {redact(url)}: no host")
        return StoreURL(url, scheme, kind, url)
    # redis: validated by the Redis helper when it opens the URL
    if not rest or rest.startswith("/"):
        raise StoreURLError(f"bad Redis URL {redact(url)}: no host")
    return StoreURL(url, scheme, kind, url)


def _factory_target(url: str) -> str:
    module, colon, name = url[len(FACTORY_PREFIX) :].partition(":")
    if not (colon and module and name.isidentifier() and all(p.isidentifier() for p in module.split("."))):
        raise StoreURLError(f"bad factory URL {redact(url)}: use python:package.module:factory")
    return f"{module}:{name}"


def _sqlite_path(url: str, rest: str) -> str:
    # sqlite:///rel -> rest "/rel" ; sqlite:////abs -> rest "//abs"
    if not rest.startswith("/"):
        raise StoreURLError(
            f"bad SQLite URL {redact(url)}: use sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = rest[1:]
    path = path.split("?", 1)[0]
    if not path:
        raise StoreURLError(f"bad SQLite URL {redact(url)}: no path")
    return unquote(path)
