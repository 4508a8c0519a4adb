"""TieredSaver: Redis answers reads, a durable store keeps everything, and no read is stale.

Real SQLite or PostgreSQL (durable) and real Redis (hot). A hypothesis state machine runs
puts, writes, reads, hot failures, hot flushes, TTL expiry, deletes and a second replica's
writes against a model of what was acknowledged; a real graph is interrupted, Redis is
killed and restarted empty, and the conversation resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import threading

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.types import Command

from dualsaver import TieredSaver
from dualsaver.embedded import EmbeddedRedis
from dualsaver.stores import open_saver
from tests.backfill_support import build_graph
from tests.faulty import Faulty

THREADS = ["t0", "t1", "t2"]


def _put(saver, thread_id: str, parent: str | None, n: int) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"n": n, "log": [f"{thread_id}-{n}"]}
    checkpoint["channel_versions"] = {"n": n + 1, "log": n + 1}
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent
    stored = saver.put(config, checkpoint, {"source": "loop", "step": n}, {"n": n + 1, "log": n + 1})
    return stored["configurable"]["checkpoint_id"]


class Tiers(RuleBasedStateMachine):
    """What was acknowledged (the model) against what a read returns."""

    new_durable: object  # () -> the URL of a fresh, empty durable store
    redis_url: str
    tmp: object

    def __init__(self) -> None:
        super().__init__()
        redis.Redis.from_url(self.redis_url).flushall()
        self.stack = []
        self.durable = self._open(type(self).new_durable(), pool_size=2)  # PostgreSQL over a pool
        self.hot = Faulty(self._open(self.redis_url))
        self.other_hot = self._open(self.redis_url)
        journal = self.tmp / f"journal-{next(RUNS)}.sqlite"
        self.saver = TieredSaver(self.durable, self.hot, circuit_cool_down=None, journal=journal)
        self.replica = TieredSaver(self.durable, self.other_hot, circuit_cool_down=None, journal=journal)
        self.latest: dict[str, str] = {}  # thread -> newest acknowledged checkpoint id
        self.writes: dict[str, int] = {}  # thread -> acknowledged writes on that checkpoint
        self.steps = itertools.count()

    def _open(self, url: str, pool_size: int = 1):
        context = open_saver(url, pool_size=pool_size)
        self.stack.append(context)
        return context.__enter__()

    def teardown(self) -> None:
        self.saver.close()
        self.replica.close()
        for context in reversed(self.stack):
            context.__exit__(None, None, None)

    @rule(thread=st.sampled_from(THREADS), by_replica=st.booleans())
    def put(self, thread: str, by_replica: bool) -> None:
        saver = self.replica if by_replica else self.saver
        self.latest[thread] = _put(saver, thread, self.latest.get(thread), next(self.steps))
        self.writes[thread] = 0

    @rule(thread=st.sampled_from(THREADS), count=st.integers(1, 3))
    def put_writes(self, thread: str, count: int) -> None:
        if thread not in self.latest:
            return
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": self.latest[thread]}}
        self.saver.put_writes(config, [("log", f"w{i}") for i in range(count)], f"task-{next(self.steps)}")
        self.writes[thread] += count

    @rule(mode=st.sampled_from([None, "raise"]))
    def hot_store(self, mode: str | None) -> None:
        self.hot.mode = mode  # "raise": every hot write of this replica fails until healed

    @rule()
    def hot_flush(self) -> None:
        redis.Redis.from_url(self.redis_url).flushall()  # a restart that lost everything

    @rule(thread=st.sampled_from(THREADS))
    def ttl_expiry(self, thread: str) -> None:
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(match=f"*{thread}*"):
            client.delete(key)

    @rule(thread=st.sampled_from(THREADS))
    def delete(self, thread: str) -> None:
        self.saver.delete_thread(thread)
        self.latest.pop(thread, None)
        self.writes.pop(thread, None)

    @invariant()
    def no_read_is_stale(self) -> None:
        for thread in THREADS:
            for saver in (self.saver, self.replica):
                found = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
                if thread not in self.latest:
                    assert found is None, (thread, found)
                    continue
                assert found is not None, f"acknowledged thread {thread} lost"
                assert found.config["configurable"]["checkpoint_id"] == self.latest[thread]
                assert len(found.pending_writes) == self.writes[thread]


RUNS = itertools.count()


@pytest.mark.parametrize("durable", ["sqlite", "postgres"])
def test_no_stale_read_and_nothing_acknowledged_lost(durable, tmp_path, redis_url, request) -> None:
    if durable == "sqlite":
        Tiers.new_durable = lambda: f"sqlite:///{tmp_path / f'durable-{next(RUNS)}.sqlite'}"
    else:
        Tiers.new_durable = request.getfixturevalue("pg_url_factory")
    Tiers.redis_url, Tiers.tmp = redis_url, tmp_path
    run_state_machine_as_test(Tiers, settings=settings(max_examples=50, stateful_step_count=20))


def test_the_hot_store_answers_when_it_is_fresh(tmp_path, redis_url) -> None:
    with open_saver(f"sqlite:///{tmp_path / 'd.sqlite'}") as durable, open_saver(redis_url) as hot:
        with TieredSaver(durable, hot, journal=tmp_path / "j.sqlite") as saver:
            graph = build_graph(saver)
            config = {"configurable": {"thread_id": "chat"}}
            graph.invoke({"turn": 0}, config)
            saver.flush()  # the hot copies are written behind, in the user's think time
            graph.invoke(Command(resume="yes"), config)
            saver.flush()
            assert graph.get_state(config).values["answer"] == "yes"
            assert saver.stats.get("hit", 0) >= 2 and saver.stats.get("stale", 0) == 0
            ids = [t.checkpoint["id"] for t in durable.list(config)]
            assert [t.checkpoint["id"] for t in saver.list(config)] == ids


def test_an_interrupted_conversation_resumes_across_a_redis_crash(tmp_path) -> None:
    with EmbeddedRedis() as server, open_saver(f"sqlite:///{tmp_path / 'd.sqlite'}") as durable:
        with open_saver(server.url) as hot, TieredSaver(durable, hot, journal=tmp_path / "j.sqlite",
                                                        circuit_cool_down=None) as saver:
            graph = build_graph(saver)
            config = {"configurable": {"thread_id": "chat"}}
            graph.invoke({"turn": 0}, config)  # stops at the interrupt
            assert graph.get_state(config).next == ("ask",)
            server.restart(crash=True)  # SIGKILL; no AOF: it comes back empty
            graph.invoke(Command(resume="after the crash"), config)
            state = graph.get_state(config)
            assert state.values["answer"] == "after the crash" and state.next == ()
            assert state.values["log"][:1] == ["prep-0"] and "asked" in state.values["log"]
            assert saver.stats["miss"] >= 1 and saver.stats["warmed"] >= 1
            expected = [t.checkpoint["id"] for t in durable.list(config)]
            assert [t.checkpoint["id"] for t in saver.list(config)] == expected


def test_hot_ttl_needs_a_hot_store_with_a_ttl(tmp_path) -> None:
    with open_saver(f"sqlite:///{tmp_path / 'd.sqlite'}") as durable, open_saver("memory://") as other:
        with pytest.raises(ValueError, match="hot_ttl"):
            TieredSaver(durable, other, hot_ttl=60)


def test_check_between_the_tiers_reports_only_real_divergences(tmp_path, redis_url) -> None:
    from tests.ops_support import cli_env, run_cli

    durable_url = f"sqlite:///{tmp_path / 'd.sqlite'}"
    with open_saver(durable_url) as durable, open_saver(redis_url) as hot:
        with TieredSaver(durable, hot, journal=tmp_path / "j.sqlite") as saver:
            parents = {t: _put(saver, t, None, 0) for t in THREADS}
            for t in THREADS:
                _put(saver, t, parents[t], 1)
        hot.delete_thread("t1")  # expired: the hot store legitimately holds less

        def tiers() -> tuple[int, str]:
            done = run_cli("check", "--old", durable_url, "--new", redis_url, "--tiered", "--quiet", env=cli_env(),
                           cwd=tmp_path)
            return done.returncode, done.stdout

        code, out = tiers()
        assert code == 0 and "Tiers agree: yes" in out, out
        only_durable = int(re.search(r"\((\d+) checkpoint\(s\) or thread\(s\) only in the durable store", out)[1])
        assert only_durable >= 1  # t1, which the check saw and did not call a divergence
        durable.delete_thread("t2")  # deleted where it counts; the hot store still holds it
        code, out = tiers()
        assert code == 1 and "missing_in_old" in out, out


def test_status_shows_the_fleets_tier_counters(tmp_path, redis_url, pg_url) -> None:
    from tests.ops_support import cli_env, run_cli

    with open_saver(f"sqlite:///{tmp_path / 'd.sqlite'}") as durable, open_saver(redis_url) as hot:
        with TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", control=pg_url, write_behind=False) as saver:
            first = _put(saver, "t0", None, 0)
            for _ in range(3):
                saver.get_tuple({"configurable": {"thread_id": "t0", "checkpoint_ns": ""}})
            hot.delete_thread("t0")
            saver.get_tuple({"configurable": {"thread_id": "t0", "checkpoint_ns": ""}})
            assert saver.stats == {"hit": 3, "miss": 1, "warmed": 1} and first
    shown = run_cli("status", "--control", pg_url, "--json", env=cli_env(), cwd=tmp_path)
    import json

    tiered = json.loads(shown.stdout)["record"]["tiered"]
    assert tiered["replicas"] == 1 and tiered["counts"] == {"hit": 3, "miss": 1, "warmed": 1}
    assert tiered["hit_rate"] == 0.75


@pytest.mark.slow
@pytest.mark.parametrize("durable", ["sqlite", "postgres"])
async def test_the_conformance_suite_passes(durable, tmp_path, redis_url, request) -> None:
    from langgraph.checkpoint.conformance import checkpointer_test, validate

    from dualsaver.redis import aopen_redis_saver
    from tests.savers import async_saver, truncate_postgres

    pg_url = request.getfixturevalue("pg_url") if durable == "postgres" else None

    @checkpointer_test(name=f"TieredSaver[{durable}, redis]")
    async def factory():
        if pg_url:
            await truncate_postgres(pg_url)
        redis.Redis.from_url(redis_url).flushall()
        async with async_saver(durable, pg_url=pg_url, tmp=tmp_path) as durable_saver:
            async with aopen_redis_saver(redis_url, prefix="tiered") as hot:
                async with TieredSaver(durable_saver, hot, journal=tmp_path / "journal.sqlite") as saver:
                    yield saver

    report = await validate(factory)
    failures = {cap: r.failures for cap, r in report.results.items() if r.detected and not r.passed}
    assert not failures, failures
    assert report.passed_all_base()
    assert all(report.results[c].tests_passed > 0 for c in ("put", "put_writes", "get_tuple", "list", "delete_thread"))


# --- the hot read and the durable probe at once -----------------------------------------------


class GatedReads:
    """A real hot saver whose reads wait at a gate: for `release`, or until `parties` reads
    are in at once (each read waits for the others)."""

    def __init__(self, inner, parties: int = 1) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.hang = False
        self.barrier = threading.Barrier(parties, timeout=10) if parties > 1 else None
        self.entered = 0
        self.arrived: asyncio.Event | None = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_tuple(self, config):
        if self.hang:
            self.release.wait(timeout=60)
        if self.barrier is not None:
            self.barrier.wait()  # BrokenBarrierError (the read fails) if fewer are ever in at once
        return self.inner.get_tuple(config)

    async def aget_tuple(self, config):
        if self.hang:
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        if self.barrier is not None:
            self.entered += 1
            if self.entered == self.barrier.parties:
                self.arrived.set()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return await self.inner.aget_tuple(config)


def _tiered_with_gate(stack, tmp_path, redis_url, *, parties: int = 1, hot_timeout: float | None = 30.0):
    durable = stack.enter_context(open_saver(f"sqlite:///{tmp_path / 'd.sqlite'}"))
    hot = GatedReads(stack.enter_context(open_saver(redis_url)), parties)
    saver = stack.enter_context(TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False,
                                            hot_timeout=hot_timeout, circuit_cool_down=60))
    return saver, hot


def _config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def test_every_caller_has_its_hot_read_on_a_thread_of_its_own(tmp_path, redis_url) -> None:
    """Eight callers at once: each hot read waits until all eight are in, which only
    happens if none waits for a side thread held by another (a shared pool of four never
    gets there: its reads fail, and the answers come from the durable store)."""
    with contextlib.ExitStack() as stack:
        saver, hot = _tiered_with_gate(stack, tmp_path, redis_url, parties=8)
        latest = {f"c{i}": _put(saver, f"c{i}", None, i) for i in range(8)}
        answers: dict[str, str] = {}

        def read(thread: str) -> None:
            answers[thread] = saver.get_tuple(_config(thread)).config["configurable"]["checkpoint_id"]

        callers = [threading.Thread(target=read, args=(t,)) for t in latest]
        for c in callers:
            c.start()
        for c in callers:
            c.join()
        assert answers == latest
        assert saver.stats == {"hit": 8}
        hot.barrier = None
        for _ in range(20):  # one after the other, the same side thread serves them all
            saver.get_tuple(_config("c0"))
        assert len(saver._sync._side._all) == 8


def test_a_hanging_hot_read_is_bounded_and_the_durable_store_answers(tmp_path, redis_url) -> None:
    with contextlib.ExitStack() as stack:
        saver, hot = _tiered_with_gate(stack, tmp_path, redis_url, hot_timeout=0.3)
        newest = _put(saver, "t0", _put(saver, "t0", None, 0), 1)
        hot.hang = True
        found = saver.get_tuple(_config("t0"))
        assert not hot.release.is_set()  # answered while the hot read still hangs
        assert found.config["configurable"]["checkpoint_id"] == newest
        assert saver.stats.get("hit", 0) == 0 and saver.stats["miss"] == 1
        assert saver.breakers["new"].state == "open"  # it did not answer in time: skipped for a while
        hot.release.set()


async def test_async_reads_overlap_and_a_hanging_one_is_bounded(tmp_path, redis_url) -> None:
    from dualsaver.stores import aopen_saver

    async with contextlib.AsyncExitStack() as stack:
        durable = await stack.enter_async_context(aopen_saver(f"sqlite:///{tmp_path / 'd.sqlite'}"))
        hot = GatedReads(await stack.enter_async_context(aopen_saver(redis_url)), parties=4)
        hot.arrived = asyncio.Event()
        saver = TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False, hot_timeout=0.5,
                            circuit_cool_down=60)
        stack.push_async_callback(saver.aclose)
        latest = {}
        for i in range(4):
            stored = await saver.aput(_config(f"a{i}"), _checkpoint(i), {"step": i}, {"n": i + 1})
            latest[f"a{i}"] = stored["configurable"]["checkpoint_id"]
        found = await asyncio.gather(*(saver.aget_tuple(_config(t)) for t in latest))  # all four in at once
        assert [f.config["configurable"]["checkpoint_id"] for f in found] == list(latest.values())
        assert saver.stats == {"hit": 4}
        hot.barrier, hot.hang = None, True
        found = await saver.aget_tuple(_config("a0"))
        assert not hot.release.is_set() and found.config["configurable"]["checkpoint_id"] == latest["a0"]
        assert saver.stats["miss"] == 1 and saver.breakers["new"].state == "open"
        hot.release.set()


def _checkpoint(n: int):
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"n": n}
    checkpoint["channel_versions"] = {"n": n + 1}
    return checkpoint


def test_side_threads_pass_errors_on_and_start_again_after_close() -> None:
    from dualsaver.saver._side import SideThreads

    side = SideThreads("test-side")
    done = side.start(lambda: 42)
    assert done.wait(5) and (done.value, done.error) == (42, None)
    failed = side.start(lambda: 1 / 0)
    assert failed.wait(5) and isinstance(failed.error, ZeroDivisionError)
    gate = threading.Event()
    slow = side.start(lambda: gate.wait(10))
    assert not slow.wait(0.05)  # still running: the caller stops waiting, the thread does not
    side.close()
    gate.set()
    assert slow.wait(5) and slow.value is True
    again = side.start(lambda: "new")  # a new thread after close
    assert again.wait(5) and again.value == "new"
    side.close()


@pytest.mark.parametrize("hot_timeout", [1.0, None])
def test_reads_with_and_without_a_bound_are_never_stale(tmp_path, redis_url, pg_url, hot_timeout) -> None:
    """With a bound the hot read runs on a side thread; without, both on the caller's: a
    thread never seen, a named checkpoint, a stale hot copy and a lost one are judged alike."""
    with open_saver(pg_url, pool_size=2) as durable, open_saver(redis_url) as hot:
        with TieredSaver(durable, hot, journal=tmp_path / "j.sqlite", write_behind=False,
                         hot_timeout=hot_timeout) as saver:
            first = _put(saver, "t0", None, 0)
            newest = _put(saver, "t0", first, 1)
            assert saver.get_tuple(_config("t0")).config["configurable"]["checkpoint_id"] == newest
            named = {"configurable": {"thread_id": "t0", "checkpoint_ns": "", "checkpoint_id": first}}
            assert saver.get_tuple(named).config["configurable"]["checkpoint_id"] == first
            assert saver.get_tuple(_config("never")) is None
            durable.put_writes({"configurable": {"thread_id": "t0", "checkpoint_ns": "", "checkpoint_id": newest}},
                               [("log", "behind the hot store's back")], "task-x")
            found = saver.get_tuple(_config("t0"))  # the hot copy lacks that write: stale, the durable answers
            assert len(found.pending_writes) == 1 and saver.stats["stale"] == 1
            misses = saver.stats.get("miss", 0)
            redis.Redis.from_url(redis_url).flushall()  # the hot store lost everything
            assert len(saver.get_tuple(_config("t0")).pending_writes) == 1 and saver.stats["miss"] == misses + 1
            assert bool(saver._sync._side._all) == (hot_timeout is not None)  # unbounded: no side thread at all