"""Real servers for the test suite, started lazily and once per session.

A session-scoped server starts only when the first test that needs it runs, so
``pytest tests/test_sqlite_only.py`` starts nothing. Per-test fixtures hand out clean state:

- ``postgres``           the EmbeddedPostgres (session): password auth on 127.0.0.1.
- ``pg_url``             URL of a fresh, empty database created for this test (dropped after).
- ``redis_server``       the standalone EmbeddedRedis (session, no AOF).
- ``redis_url``          its URL, after FLUSHALL.
- ``redis_cluster``      the 3-master EmbeddedRedisCluster (session).
- ``redis_cluster_url``  ``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``, after
                         FLUSHALL on every master.
- ``redis_stack``        an EmbeddedRedisStack (session): Redis 8 + RedisJSON + RediSearch,
                         password auth.
- ``langgraph_redis_url`` ``redis+langgraph://`` URL of it (the official saver), after FLUSHALL
                         (which drops its search indexes too).
- ``langgraph_redis_url_b`` the same on a second such server, for two official stores at once
                         (the saver's write registry keys ignore its prefix: two stores on one
                         server would share them).
- ``sqlite_path``        ``tmp_path / "store.sqlite"`` (not created).
- ``pg_url_factory``     ``pg_url_factory() -> url`` of another fresh database on each call
                         (e.g. one per hypothesis example); all are dropped after the test.

Hypothesis runs with ``deadline=None`` (the suite has no timing thresholds; a real server on a
shared 2-core machine is not a stopwatch), and derandomized when ``CI`` is set so a CI run is
reproducible.

The URLs carry the password: never print or log them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedRedisCluster, EmbeddedRedisStack

settings.register_profile("dualsaver", deadline=None, print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("dualsaver"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dualsaver")

_database_numbers = itertools.count(1)


def _database_name() -> str:
    return f"test_{os.getpid()}_{next(_database_numbers)}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = _database_name()
    url = postgres.create_database(name)
    yield url
    # WITH (FORCE) ends sessions a test left open (pools are closed by then normally).
    postgres.drop_database(name)


@pytest.fixture
def pg_url_factory(postgres: EmbeddedPostgres) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def new_database() -> str:
        names.append(_database_name())
        return postgres.create_database(names[-1])

    yield new_database
    for name in names:
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedRedisCluster]:
    with EmbeddedRedisCluster(masters=3) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: EmbeddedRedisCluster) -> str:
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_stack() -> Iterator[EmbeddedRedisStack]:
    with EmbeddedRedisStack(password="stack-secret") as server:
        yield server


@pytest.fixture(scope="session")
def redis_stack_b() -> Iterator[EmbeddedRedisStack]:
    with EmbeddedRedisStack(password="stack-secret-b") as server:
        yield server


@pytest.fixture
def langgraph_redis_url(redis_stack: EmbeddedRedisStack) -> str:
    redis_stack.flushall()
    return redis_stack.langgraph_url


@pytest.fixture
def langgraph_redis_url_b(redis_stack_b: EmbeddedRedisStack) -> str:
    redis_stack_b.flushall()
    return redis_stack_b.langgraph_url


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite"
