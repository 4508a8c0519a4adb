"""Invariant 1: in every phase, DualSaver passes the official conformance suite over real stores."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities
from langgraph.checkpoint.memory import InMemorySaver

from dualsaver import DualSaver, Phase
from tests.savers import async_saver, truncate_postgres

PAIRS = [("memory", "memory"), ("sqlite", "postgres"), ("postgres", "sqlite"), ("postgres", "postgres")]


def _pg_urls(request: pytest.FixtureRequest, pair: tuple[str, str]) -> tuple[str | None, str | None]:
    """One fresh database per postgres side (old and new must not share tables)."""
    old, new = pair
    old_url = request.getfixturevalue("pg_url") if old == "postgres" else None
    new_url = None
    if new == "postgres":
        new_url = request.getfixturevalue("postgres").create_database(
            f"new_{abs(hash(request.node.nodeid))}"
        )
    return old_url, new_url


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(Phase), ids=str)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-to-{p[1]}")
async def test_conformance_in_every_phase(request, tmp_path, pair, phase):
    old_kind, new_kind = pair
    old_url, new_url = _pg_urls(request, pair)

    @checkpointer_test(name=f"DualSaver[{old_kind}->{new_kind}, {phase}]")
    async def factory():
        for url in (old_url, new_url):
            if url:
                await truncate_postgres(url)
        async with async_saver(old_kind, pg_url=old_url, tmp=tmp_path) as old:
            async with async_saver(new_kind, pg_url=new_url, tmp=tmp_path) as new:
                yield DualSaver(old, new, phase, journal=tmp_path / "journal.sqlite")

    report = await validate(factory)
    failures = {
        cap: result.failures
        for cap, result in report.results.items()
        if result.detected and not result.passed
    }
    assert not failures, failures
    assert report.passed_all_base()
    # The suite really ran: every base capability executed its tests.
    assert all(report.results[c].tests_passed > 0 for c in ("put", "put_writes", "get_tuple", "list", "delete_thread"))


class _ForeignSaver(BaseCheckpointSaver):
    """A saver dualsaver has no native adapter for, implementing no capability."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = InMemorySaver()

    def get_tuple(self, config):
        return self.inner.get_tuple(config)

    async def aget_tuple(self, config):
        return self.inner.get_tuple(config)


async def test_extended_capabilities_follow_what_the_pair_can_do(tmp_path, pg_url):
    """A capability is advertised when both wrapped savers can do it, themselves or through
    their native store (SQLite implements none); never over a saver that can do neither."""
    async with async_saver("postgres", pg_url=pg_url) as pg, async_saver("sqlite", tmp=tmp_path) as lite:
        mixed = DetectedCapabilities.from_instance(DualSaver(lite, pg, journal=":memory:"))
        foreign = DetectedCapabilities.from_instance(DualSaver(_ForeignSaver(), pg, journal=":memory:"))
    extended = {"prune", "copy_thread", "delete_for_runs"}
    assert extended <= {c.value for c in mixed.detected}
    assert not extended & {c.value for c in foreign.detected}
    assert not hasattr(type(DualSaver(_ForeignSaver(), lite, journal=":memory:")), "_capabilities_fixed")
