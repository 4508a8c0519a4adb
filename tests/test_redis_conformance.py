"""The official conformance suite against the Redis savers, on a standalone server and on a
3-master cluster, for the async saver and (through threads) the sync one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from dualsaver.redis import RedisSaver, aopen_redis_saver, open_redis_saver

pytestmark = pytest.mark.slow


class ThreadedRedisSaver(RedisSaver):
    """The sync saver behind the async API the suite calls: every call runs in a thread."""

    async def aget_tuple(self, config: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: Any, *, filter: Any = None, before: Any = None, limit: Any = None) -> AsyncIterator[Any]:
        found = await asyncio.to_thread(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
        for tup in found:
            yield tup

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Sequence[Any], task_id: str, task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


async def _assert_conformant(name: str, factory: Any) -> None:
    report = await validate(checkpointer_test(name=name)(factory))
    failures = {cap: r.failures for cap, r in report.results.items() if r.failures}
    assert report.passed_all(), failures
    # Every capability, extended ones included, is implemented and was exercised.
    assert {c for c, r in report.results.items() if r.detected} == {c.value for c in ALL_CAPABILITIES}


@pytest.mark.parametrize("where", ["standalone", "cluster"])
async def test_async_saver_conformance(where: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url" if where == "standalone" else "redis_cluster_url")

    async def factory() -> AsyncIterator[Any]:
        async with aopen_redis_saver(url, prefix="conformance") as saver:
            yield saver

    await _assert_conformant(f"AsyncRedisSaver/{where}", factory)


@pytest.mark.parametrize("where", ["standalone", "cluster"])
async def test_sync_saver_conformance(where: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url" if where == "standalone" else "redis_cluster_url")

    async def factory() -> AsyncIterator[Any]:
        with open_redis_saver(url, prefix="conformance") as saver:
            yield ThreadedRedisSaver(saver.client, prefix=saver.prefix)

    await _assert_conformant(f"RedisSaver/{where}", factory)
