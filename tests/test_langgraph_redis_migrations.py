"""Migrations through the official LangGraph Redis saver are exact: SQLite -> official Redis
-> PostgreSQL, and official Redis <-> dualsaver's plain-Redis saver, each compared field by
field against the source (every checkpoint, its metadata, parent, and every write with its
task path and idx, by meaning), the check clean after each copy, and a re-run adding nothing.

The history comes from real graphs (tests/test_redis_migration.py's `make_history`: a
subgraph, parallel Send branches, interrupts, a DeltaChannel, LangChain messages); one
thread waits at its interrupt and resumes on each store it was copied to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualsaver import abackfill, acheck, backfill, check
from dualsaver.checker.canonical import canonical
from dualsaver.stores import aopen_saver, open_saver
from tests.backfill_support import normalize
from tests.langgraph_redis_support import public_history
from tests.test_redis_migration import AGENT_THREADS, WAITING, assert_resumes_on, make_history, native_view

MEMORY = ":memory:"


def view(saver: Any) -> dict:
    """Each checkpoint as the store holds it, in canonical form (tuples and lists alike; JSON
    keeps no tuples)."""
    return {key: canonical(value) for key, value in normalize(native_view(saver)).items()}


def _copied_exactly(result: Any, source: dict) -> None:
    assert result.exact and (result.failed, result.unreadable) == (0, 0)
    assert result.checkpoints == len(source)
    assert result.writes == sum(len(writes) for (*_, writes) in source.values())


def test_sqlite_to_official_redis_to_postgres(sqlite_path: Path, langgraph_redis_url: str, pg_url: str) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as lite, open_saver(langgraph_redis_url) as official:
        threads = make_history(lite)
        source = view(lite)
        _copied_exactly(backfill(lite, official, state_path=MEMORY, workers=2), source)
        assert view(official) == source
        assert check(lite, official).clean
        assert backfill(lite, official, state_path=MEMORY).skipped == len(source)
        assert backfill(lite, official, state_path=MEMORY).checkpoints == 0
        # What the application sees through the official saver's own reads agrees too.
        assert public_history(official, AGENT_THREADS) == public_history(lite, AGENT_THREADS)
        assert {k[0] for k in source} == set(threads)

        with open_saver(pg_url) as pg:
            _copied_exactly(backfill(official, pg, state_path=MEMORY), source)
            assert view(pg) == source
            assert check(official, pg).clean and check(lite, pg).clean
            assert backfill(official, pg, state_path=MEMORY).checkpoints == 0
            assert_resumes_on(pg)
        assert_resumes_on(official)


async def test_official_redis_and_dualsavers_redis_both_ways(redis_url: str, langgraph_redis_url: str) -> None:
    back_url = redis_url.replace("/0", "/0?prefix=back")
    with open_saver(redis_url) as plain:
        make_history(plain)
        source = view(plain)
    async with aopen_saver(redis_url) as plain, aopen_saver(langgraph_redis_url) as official:
        _copied_exactly(await abackfill(plain, official, state_path=MEMORY, workers=2), source)
        assert (await acheck(plain, official)).clean
        async with aopen_saver(back_url) as back:
            _copied_exactly(await abackfill(official, back, state_path=MEMORY), source)
            assert (await acheck(official, back)).clean and (await acheck(plain, back)).clean
            assert (await abackfill(official, back, state_path=MEMORY)).checkpoints == 0
    with open_saver(langgraph_redis_url) as official, open_saver(back_url) as back:
        assert view(official) == source == view(back)
        assert_resumes_on(back)
        assert_resumes_on(official)
        assert WAITING in {t for (t, _, _) in source}
