"""Extended capabilities (delete_for_runs, copy_thread, prune) on DualSaver and TieredSaver for
every pair with native adapters, whatever the wrapped savers implement: the official
conformance suite passes for each capability advertised, over real stores, and both stores
end up alike after each one."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities

from dualsaver import DualSaver, Phase, TieredSaver
from dualsaver.stores import aopen_saver
from tests.savers import truncate_postgres

EXTENDED = {"delete_for_runs", "copy_thread", "prune"}


def _urls(request: pytest.FixtureRequest, tmp_path, kind: str, side: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/{side}.sqlite"
    if kind == "memory":
        return f"memory://{side}-{abs(hash(request.node.nodeid))}"
    if kind == "postgres":
        return request.getfixturevalue("postgres").create_database(f"{side}_{abs(hash(request.node.nodeid))}")
    if kind == "redis":
        return request.getfixturevalue("redis_url")
    if kind == "langgraph-redis":
        return request.getfixturevalue("langgraph_redis_url")
    raise ValueError(kind)


async def _fresh(request: pytest.FixtureRequest, kind: str, url: str) -> None:
    """Empty a store between two conformance tests (each wants a fresh saver)."""
    if kind == "postgres":
        await truncate_postgres(url)
    elif kind == "redis":
        request.getfixturevalue("redis_server").flushall()
    elif kind == "langgraph-redis":
        request.getfixturevalue("redis_stack").flushall()


async def _conformance(name: str, build, extended: set[str]) -> None:
    @checkpointer_test(name=name)
    async def factory():
        async for saver in build():
            yield saver

    report = await validate(factory)
    failures = {cap: r.failures for cap, r in report.results.items() if r.detected and not r.passed}
    assert not failures, failures
    ran = {cap.value if hasattr(cap, "value") else str(cap): r for cap, r in report.results.items()}
    for capability in extended:
        assert ran[capability].detected and ran[capability].tests_passed > 0, capability


DUAL_CASES = [
    ("sqlite", "postgres", Phase.SHADOW_WRITE),
    ("sqlite", "postgres", Phase.READ_SWITCH),
    ("postgres", "redis", Phase.SHADOW_WRITE),
    ("postgres", "langgraph-redis", Phase.BACKFILL),
    ("memory", "memory", Phase.DECOMMISSION),
]


@pytest.mark.slow
@pytest.mark.parametrize("old_kind,new_kind,phase", DUAL_CASES, ids=lambda v: str(v))
async def test_dualsaver_conformance_for_every_capability(request, tmp_path, old_kind, new_kind, phase):
    old_url, new_url = _urls(request, tmp_path, old_kind, "old"), _urls(request, tmp_path, new_kind, "new")

    async def build():
        await _fresh(request, old_kind, old_url)
        await _fresh(request, new_kind, new_url)
        async with aopen_saver(old_url) as old, aopen_saver(new_url) as new:
            yield DualSaver(old, new, phase, journal=tmp_path / "journal.sqlite", write_behind=False)

    await _conformance(f"DualSaver[{old_kind}->{new_kind}, {phase}]", build, EXTENDED)


@pytest.mark.slow
@pytest.mark.parametrize("hot_kind", ["redis", "langgraph-redis"])
async def test_tieredsaver_conformance_for_every_capability(request, tmp_path, hot_kind):
    durable_url, hot_url = _urls(request, tmp_path, "postgres", "durable"), _urls(request, tmp_path, hot_kind, "hot")

    async def build():
        await _fresh(request, "postgres", durable_url)
        await _fresh(request, hot_kind, hot_url)
        async with aopen_saver(durable_url) as durable, aopen_saver(hot_url) as hot:
            yield TieredSaver(durable, hot, journal=tmp_path / "journal.sqlite", write_behind=False)

    await _conformance(f"TieredSaver[postgres+{hot_kind}]", build, EXTENDED)


async def test_a_pair_without_any_override_still_offers_every_async_capability(tmp_path, pg_url):
    """SQLite implements none of them; the composite offers all three, in async form."""
    async with aopen_saver(f"sqlite:///{tmp_path}/a.sqlite") as lite, aopen_saver(pg_url) as pg:
        detected = {c.value for c in DetectedCapabilities.from_instance(DualSaver(lite, pg, journal=":memory:")).detected}
    assert EXTENDED <= detected
