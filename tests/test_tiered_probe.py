"""A tiered read's probe sent ahead and its hot read bounded on the caller's thread.

Real PostgreSQL (the durable store, over a pool or over one connection) and real Redis. The probe is one statement
prepared on each pooled connection and sent before the hot read (`dualsaver.stores._pg_lookup`):
a session that lost its statements gets them again, a connection that does not prepare is
asked without, and a read that fails or is cancelled between the two halves gives its
connection back (a single connection: its lock, taken only when it was free). The hot read of dualsaver's Redis saver keeps its own time bound (a wait on
its socket): a frozen Redis is given up on without any side thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from dualsaver import TieredSaver
from dualsaver.embedded import EmbeddedRedis
from dualsaver.saver._tier_plans import Later
from dualsaver.stores import aopen_saver, open_saver


def _config(thread: str, checkpoint_id: str | None = None) -> dict:
    conf = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _checkpoint(n: int):
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"n": n}
    checkpoint["channel_versions"] = {"n": n + 1}
    return checkpoint


def _put(saver, thread: str, n: int, parent: str | None = None) -> str:
    stored = saver.put(_config(thread, parent), _checkpoint(n), {"step": n}, {"n": n + 1})
    return stored["configurable"]["checkpoint_id"]


def _bounded(url: str, connect_timeout: float | None) -> str:
    return url if connect_timeout is None else f"{url}?socket_connect_timeout={connect_timeout}"


def _kwargs(prepare_threshold: int | None = 0) -> dict:
    return {"autocommit": True, "prepare_threshold": prepare_threshold, "row_factory": dict_row}


@contextlib.contextmanager
def _pooled(pg_url: str, prepare_threshold: int | None = 0):
    """A PostgresSaver over a pool of exactly one connection (which one a read takes is known)."""
    with ConnectionPool(pg_url, min_size=1, max_size=1, kwargs=_kwargs(prepare_threshold), open=True) as pool:
        saver = PostgresSaver(pool)
        saver.setup()
        yield saver


@contextlib.contextmanager
def _single(pg_url: str):
    """A PostgresSaver over one connection, as `PostgresSaver.from_conn_string` makes it."""
    with Connection.connect(pg_url, **_kwargs()) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        yield saver


def _available(durable) -> int:
    return durable.conn.get_stats().get("pool_available", 0)


def _prepared(conn) -> set[str]:
    return {row["name"] for row in conn.execute("SELECT name FROM pg_prepared_statements", prepare=False)}


def test_a_session_that_lost_its_statements_prepares_them_again(tmp_path, pg_url, redis_url) -> None:
    with (
        _pooled(pg_url) as durable,
        open_saver(redis_url) as hot,
        TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False) as saver,
    ):
        first = _put(saver, "t0", 0)
        assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == first
        with durable.conn.connection() as conn:  # the pool's only connection
            assert "dualsaver_latest" in _prepared(conn)
            conn.execute("DISCARD ALL", prepare=False)  # as a pool's reset may
            assert "dualsaver_latest" not in _prepared(conn)
        newest = _put(saver, "t0", 1, first)
        assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest
        named = saver.get_tuple(_config("t0", first))  # the other statement, prepared on first use
        assert named.config["configurable"]["checkpoint_id"] == first
        with durable.conn.connection() as conn:
            assert {"dualsaver_latest", "dualsaver_checkpoint"} <= _prepared(conn)
        assert saver.stats == {"hit": 3}


def test_a_connection_that_does_not_prepare_is_asked_without(tmp_path, pg_url, redis_url) -> None:
    """prepare_threshold=None (PgBouncer in transaction mode): no statement is left behind."""
    with (
        _pooled(pg_url, prepare_threshold=None) as durable,
        open_saver(redis_url) as hot,
        TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False) as saver,
    ):
        newest = _put(saver, "t0", 1, _put(saver, "t0", 0))
        assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest
        assert saver.get_tuple(_config("none")) is None
        assert saver.stats == {"hit": 1, "miss": 1}
        with durable.conn.connection() as conn:
            assert not {"dualsaver_latest", "dualsaver_checkpoint"} & _prepared(conn)


class Abort(BaseException):
    """Not an Exception: what no outcome catches (as KeyboardInterrupt)."""


class AbortingReads:
    """A real hot saver whose reads raise `Abort` while `abort` is set."""

    def __init__(self, inner) -> None:
        self.inner, self.abort = inner, True

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_tuple(self, config):
        if self.abort:
            raise Abort
        return self.inner.get_tuple(config)


@pytest.mark.parametrize("hot_timeout", [1.0, None])
def test_a_read_that_dies_between_ask_and_answer_gives_the_connection_back(
    tmp_path, pg_url, redis_url, hot_timeout
) -> None:
    with _pooled(pg_url) as durable, open_saver(redis_url) as redis_hot:
        hot = AbortingReads(redis_hot)
        with TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False,
                         hot_timeout=hot_timeout) as saver:
            newest = _put(saver, "t0", 0)
            with pytest.raises(Abort):
                saver.get_tuple(_config("t0"))  # after the probe was sent
            assert _available(durable) == 1  # the connection came back
            hot.abort = False
            assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest


class HangingReads:
    """A real async hot saver whose reads wait until `release` is set."""

    def __init__(self, inner) -> None:
        self.inner, self.release = inner, asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def aget_tuple(self, config):
        await self.release.wait()
        return await self.inner.aget_tuple(config)


async def test_a_cancelled_async_read_gives_the_connection_back(tmp_path, pg_url, redis_url) -> None:
    async with contextlib.AsyncExitStack() as stack:
        pool = AsyncConnectionPool(pg_url, min_size=1, max_size=1, kwargs=_kwargs(), open=False)
        await pool.open(wait=True)
        stack.push_async_callback(pool.close)
        durable = AsyncPostgresSaver(pool)
        await durable.setup()
        hot = HangingReads(await stack.enter_async_context(aopen_saver(redis_url)))
        saver = TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False, hot_timeout=30)
        stack.push_async_callback(saver.aclose)
        stored = await saver.aput(_config("a0"), _checkpoint(0), {"step": 0}, {"n": 1})
        read = asyncio.ensure_future(saver.aget_tuple(_config("a0")))
        while _available(durable) == 1:  # until the probe holds the connection
            await asyncio.sleep(0.01)
        read.cancel()  # the application gave up (a client that went away)
        with pytest.raises(asyncio.CancelledError):
            await read
        assert _available(durable) == 1
        hot.release.set()
        found = await saver.aget_tuple(_config("a0"))
        assert found.config["configurable"]["checkpoint_id"] == stored["configurable"]["checkpoint_id"]
        assert saver.stats == {"hit": 1}


@pytest.mark.parametrize("connect_timeout", [0.2, None])
def test_a_frozen_redis_is_given_up_on(tmp_path, pg_url, connect_timeout) -> None:
    """With connects bounded too (socket_connect_timeout <= hot_timeout), on the caller's
    thread; without, a connection made during a read could wait for ever: on a side thread."""
    with (
        EmbeddedRedis() as server,
        _pooled(pg_url) as durable,
        open_saver(_bounded(server.url, connect_timeout)) as hot,
        TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False, hot_timeout=0.3,
                    circuit_cool_down=60) as saver,
    ):
        newest = _put(saver, "t0", 1, _put(saver, "t0", 0))
        assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest
        server.pause()  # SIGSTOP: it keeps its connections and answers nothing
        try:
            found = saver.get_tuple(_config("t0"))  # would wait for ever without the bound
        finally:
            server.resume()
        assert found.config["configurable"]["checkpoint_id"] == newest  # the durable store answered
        assert saver.stats == {"hit": 1, "miss": 1, "warm_failed": 1}  # not warmed while its circuit is open
        assert saver.breakers["new"].state == "open"
        assert bool(saver._sync._side._all) == (connect_timeout is None)
        assert _available(durable) == 1
        saver.breakers["new"].succeeded()
        hot.client.ping()
        assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest
        assert saver.stats["hit"] == 2  # its connection was dropped, not read as another's


def test_the_unanswered_reply_is_never_read_by_the_next_call(pg_url) -> None:
    """The frozen server answers after the bound: that answer must not become the next one's."""
    with EmbeddedRedis() as server, open_saver(_bounded(server.url, 0.2)) as hot:
        from dualsaver.errors import SecondaryTimeout

        first = {"configurable": {"thread_id": "one", "checkpoint_ns": ""}}
        second = {"configurable": {"thread_id": "two", "checkpoint_ns": ""}}
        hot.put(first, _checkpoint(1), {"step": 1}, {"n": 2})
        hot.put(second, _checkpoint(2), {"step": 2}, {"n": 3})
        server.pause()
        try:
            with pytest.raises(SecondaryTimeout):
                hot.get_tuple_within(first, timeout=0.2)
        finally:
            server.resume()
        for _ in range(5):  # the pool hands its connections round: none carries "one"'s reply
            assert hot.get_tuple_within(second, timeout=5).checkpoint["channel_values"] == {"n": 2}


async def test_a_frozen_redis_is_given_up_on_in_async_reads_too(tmp_path, pg_url) -> None:
    async with contextlib.AsyncExitStack() as stack:
        server = stack.enter_context(EmbeddedRedis())
        durable = await stack.enter_async_context(aopen_saver(pg_url, pool_size=2))
        hot = await stack.enter_async_context(aopen_saver(server.url))
        saver = TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False, hot_timeout=0.3,
                            circuit_cool_down=60)
        stack.push_async_callback(saver.aclose)
        stored = await saver.aput(_config("a0"), _checkpoint(0), {"step": 0}, {"n": 1})
        newest = stored["configurable"]["checkpoint_id"]
        server.pause()
        try:
            found = await saver.aget_tuple(_config("a0"))  # would wait for ever without the bound
        finally:
            server.resume()
        assert found.config["configurable"]["checkpoint_id"] == newest
        assert saver.stats == {"miss": 1, "warm_failed": 1} and saver.breakers["new"].state == "open"
        saver.breakers["new"].succeeded()
        await hot.client.ping()
        for _ in range(3):  # the reply that came late is nobody's answer
            assert (await saver.aget_tuple(_config("a0"))).config["configurable"]["checkpoint_id"] == newest
        assert saver.stats["hit"] == 3


def test_a_bounded_read_reconnects_and_reloads_its_script_after_a_restart() -> None:
    """A restart leaves the pool's connection dead and the server without the read script:
    the bounded read connects again and loads it again, and answers."""
    with EmbeddedRedis() as server, open_saver(_bounded(server.url, 0.5)) as hot:
        config = {"configurable": {"thread_id": "one", "checkpoint_ns": ""}}
        hot.put(config, _checkpoint(1), {"step": 1}, {"n": 2})
        assert hot.get_tuple_within(config, timeout=5).checkpoint["channel_values"] == {"n": 1}
        server.restart(crash=True)  # SIGKILL, no AOF: back empty, scripts gone
        assert hot.get_tuple_within(config, timeout=5) is None
        hot.put(config, _checkpoint(2), {"step": 2}, {"n": 3})
        assert hot.get_tuple_within(config, timeout=5).checkpoint["channel_values"] == {"n": 2}


@pytest.mark.parametrize("hot_timeout", [1.0, None])
def test_a_single_connection_is_asked_ahead_when_free_and_always_let_go(
    tmp_path, pg_url, redis_url, hot_timeout
) -> None:
    with _single(pg_url) as durable, open_saver(redis_url) as redis_hot:
        hot = AbortingReads(redis_hot)
        with TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False,
                         hot_timeout=hot_timeout) as saver:
            newest = _put(saver, "t0", 0)
            probe, sent, held = saver._sync.targets["probe"], [], []
            send = probe.send
            probe.send = lambda *args: sent.append(send(*args)) or sent[-1]
            hot.get_tuple = lambda config: (held.append(durable.lock.locked()), redis_hot.get_tuple(config))[1]
            assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest
            assert len(sent) == 1 and type(sent[0]) is not Later  # asked ahead: the connection was free
            assert not durable.lock.locked()  # and let go
            assert len(held) == 1
            # On the caller's thread the hot read runs while the probe holds the connection. With
            # a bound it runs on a side thread (this hot saver does not bound its own reads), which
            # may start only after the answer was collected and the connection let go.
            if hot_timeout is None:
                assert held == [True]
            del hot.get_tuple
            with pytest.raises(Abort):
                saver.get_tuple(_config("t0"))  # after the probe was sent
            assert not durable.lock.locked()
            hot.abort = False
            # busy (another thread's call holds it): the read does not wait to ask ahead; the
            # probe is asked whole after the hot read, once the connection is free
            done = threading.Event()
            with durable.lock:
                reader = threading.Thread(target=lambda: (saver.get_tuple(_config("t0")), done.set()))
                reader.start()
                assert not done.wait(0.3)  # its probe waits for the connection, not its hot read
            reader.join(10)
            assert done.is_set() and not durable.lock.locked()
            assert saver.stats == {"hit": 2}  # the aborted read counted nothing


async def test_a_cancelled_async_read_lets_a_single_connection_go(tmp_path, pg_url, redis_url) -> None:
    async with contextlib.AsyncExitStack() as stack:
        conn = await AsyncConnection.connect(pg_url, **_kwargs())
        stack.push_async_callback(conn.close)
        durable = AsyncPostgresSaver(conn)
        await durable.setup()
        hot = HangingReads(await stack.enter_async_context(aopen_saver(redis_url)))
        saver = TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False, hot_timeout=30)
        stack.push_async_callback(saver.aclose)
        stored = await saver.aput(_config("a0"), _checkpoint(0), {"step": 0}, {"n": 1})
        read = asyncio.ensure_future(saver.aget_tuple(_config("a0")))
        for _ in range(500):  # until the probe holds the connection (asked ahead: it was free)
            if durable.lock.locked():
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the probe was not asked ahead on the free connection")
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert not durable.lock.locked()
        hot.release.set()
        found = await saver.aget_tuple(_config("a0"))
        assert found.config["configurable"]["checkpoint_id"] == stored["configurable"]["checkpoint_id"]
        assert saver.stats == {"hit": 1}
