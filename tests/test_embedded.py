"""The embedded servers are real: they start, authenticate, answer, and keep what they must."""

from __future__ import annotations

import psycopg
import pytest
import redis

from dualsaver.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError


def test_pg_url_is_a_fresh_database_with_password_auth(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()[0]
        method = conn.execute("show password_encryption").fetchone()[0]
    assert tables == 0
    assert method == "scram-sha-256"


def test_each_test_gets_its_own_database(pg_url: str, postgres: EmbeddedPostgres) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("create table marker (x int)")
        name = conn.info.dbname
    # a second database made the same way does not see the first one's table
    other = postgres.create_database(name + "_other")
    try:
        with psycopg.connect(other) as conn:
            assert conn.execute("select to_regclass('marker')").fetchone()[0] is None
    finally:
        postgres.drop_database(name + "_other")


def test_wrong_password_is_refused(postgres: EmbeddedPostgres) -> None:
    bad = postgres.url.replace(f":{postgres.password}@", ":not-the-password@")
    assert bad != postgres.url
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=10)


def test_password_stays_out_of_repr(postgres: EmbeddedPostgres) -> None:
    assert postgres.password not in repr(postgres)


def test_redis_answers_ping_and_starts_flushed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        assert client.dbsize() == 0
        client.set("left-behind", "1")  # the next test's redis_url must not see it
    finally:
        client.close()


def test_redis_url_is_flushed_between_tests(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()


def test_cluster_has_three_masters_and_is_ok(redis_cluster_url: str, redis_cluster) -> None:
    assert redis_cluster_url.startswith("redis+cluster://")
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    try:
        info = client.cluster_info(target_nodes=redis.RedisCluster.RANDOM)
        assert info["cluster_state"] == "ok"
        masters = [n for n in client.get_nodes() if n.server_type == "primary"]
        assert len(masters) == 3
        # keys land on different masters and read back through the cluster client
        for i in range(30):
            client.set(f"k{i}", i)
        assert sorted(int(client.get(f"k{i}")) for i in range(30)) == list(range(30))
        assert len({client.keyslot(f"k{i}") for i in range(30)}) > 1
    finally:
        client.close()


@pytest.mark.parametrize("crash", [False, True], ids=["clean-restart", "crash-restart"])
def test_redis_appendonly_keeps_keys_across_restart(crash: bool) -> None:
    with EmbeddedRedis(appendonly=True) as server:
        port, pid = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.close()
        server.restart(crash=crash)
        assert server.port == port and server.pid != pid
        client = redis.Redis.from_url(server.url)
        try:
            assert client.get("kept") == b"yes"
        finally:
            client.close()


def test_redis_without_appendonly_loses_keys_on_crash() -> None:
    # the control for the test above: it could fail
    with EmbeddedRedis(appendonly=False) as server:
        client = redis.Redis.from_url(server.url)
        client.set("lost", "yes")
        client.close()
        server.restart(crash=True)
        client = redis.Redis.from_url(server.url)
        try:
            assert client.get("lost") is None
        finally:
            client.close()


def test_postgres_keeps_a_given_data_dir_across_restart(tmp_path) -> None:
    data_dir = tmp_path / "pg"
    with EmbeddedPostgres(data_dir=data_dir, password="demo-secret", durable=True) as server:
        url = server.create_database("kept")
        with psycopg.connect(url) as conn:
            conn.execute("create table t (x int); insert into t values (42)")
        server.restart(crash=True)
        with psycopg.connect(url) as conn:
            assert conn.execute("select x from t").fetchone()[0] == 42
    assert (data_dir / "PG_VERSION").exists()
    # a second server on the same directory reuses the cluster (no initdb) and the password
    with EmbeddedPostgres(data_dir=data_dir, password="demo-secret") as again:
        with psycopg.connect(again.url_for("kept")) as conn:
            assert conn.execute("select x from t").fetchone()[0] == 42


def test_start_failure_raises_with_log_tail(tmp_path) -> None:
    server = EmbeddedPostgres(settings={"shared_buffers": "not-a-size"})
    with pytest.raises(EmbeddedServerError, match="shared_buffers"):
        server.start()
    assert not server.running
    assert server.password not in repr(server)


def test_redis_password_is_required_when_set() -> None:
    with EmbeddedRedis(password="s3cret pw") as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()
        assert "s3cret" not in repr(server)


def test_pg_url_factory_gives_distinct_databases(pg_url_factory) -> None:
    first, second = pg_url_factory(), pg_url_factory()
    assert first != second
    with psycopg.connect(first) as a, psycopg.connect(second) as b:
        assert a.info.dbname != b.info.dbname
