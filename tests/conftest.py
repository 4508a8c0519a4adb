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
- ``sqlite_path``        ``tmp_path / "store.sqlite"`` (not created).

The URLs carry the password: never print or log them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedRedisCluster

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    # pid in the name: two pytest processes never share one server, but it keeps names
    # unique if a plugin ever forks workers that inherit the counter.
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    url = postgres.create_database(name)
    yield url
    # WITH (FORCE) ends sessions a test left open (pools are closed by then normally).
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


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite"
