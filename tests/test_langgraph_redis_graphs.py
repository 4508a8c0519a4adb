"""Real graphs (a subgraph, parallel Send branches, an interrupt) over a DualSaver with the
official LangGraph Redis saver on one side, through every phase; an interrupted thread
resumes after the phase changes; and the two stores agree (the check) wherever both were
written from the start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from langgraph.types import Command

from dualsaver import DualSaver, Phase, acheck, check
from dualsaver.stores import aopen_saver, open_saver
from tests.graphs import arun_turn, build_agent, config, expected_results, run_turn
from tests.savers import async_saver
from tests.test_graphs import MOVES, PHASES

PAIRS = [("sqlite", "official"), ("official", "redis")]


@contextmanager
def _pair(pair: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    urls = {
        "sqlite": f"sqlite:///{tmp_path / 'old.sqlite'}",
        "official": request.getfixturevalue("langgraph_redis_url"),
        "redis": request.getfixturevalue("redis_url"),
    }
    with open_saver(urls[pair[0]]) as old, open_saver(urls[pair[1]]) as new:
        yield old, new


def _namespaces(saver: Any, thread_id: str) -> set[str]:
    return {t.config["configurable"]["checkpoint_ns"] for t in saver.list(config(thread_id))}


@pytest.mark.parametrize("phase", PHASES, ids=str)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-to-{p[1]}")
def test_graph_runs_in_every_phase(request, tmp_path, pair, phase):
    # closed before its stores: its worker threads must not write into the next test's
    with _pair(pair, request, tmp_path) as (old, new), DualSaver(old, new, phase, journal=tmp_path / "j.sqlite") as saver:
        app = build_agent(saver)
        first = run_turn(app, "t1", "alpha")
        second = run_turn(app, "t1", "beta", approve=False)
        assert first["results"] == expected_results("alpha")
        assert second["results"] == expected_results("alpha", "beta")
        assert second["log"][-2:] == ["approved=False", "finish"]
        assert saver.flush(timeout=30)
        assert saver.secondary_failures.total() == 0
        written = [old, new] if phase is not Phase.DECOMMISSION else [new]
        for store in written:
            assert any(ns.startswith("review:") for ns in _namespaces(store, "t1"))
            assert store.get_tuple(config("t1")).checkpoint["channel_values"]["results"] == second["results"]
        if phase is Phase.DECOMMISSION:
            assert not list(old.list(config("t1")))
        else:
            assert check(old, new).clean  # live copies agree, special writes and Sends included


@pytest.mark.parametrize("move", MOVES, ids=lambda m: f"{m[0]}-to-{m[1]}")
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-to-{p[1]}")
def test_interrupted_thread_resumes_after_phase_change(request, tmp_path, pair, move):
    before, after = move
    with _pair(pair, request, tmp_path) as (old, new), DualSaver(old, new, before, journal=tmp_path / "j.sqlite") as saver:
        app = build_agent(saver)
        app.invoke({"topic": "alpha"}, config("t1"))
        assert app.get_state(config("t1")).next == ("approve",)
        saver.flush(timeout=30)
        saver.phase = after
        final = app.invoke(Command(resume=True), config("t1"))
        assert final["results"] == expected_results("alpha")
        assert final["log"] == ["plan", "approved=True", "finish"]
        assert app.get_state(config("t1")).next == ()
        assert saver.flush(timeout=30) and saver.secondary_failures.total() == 0


@pytest.mark.parametrize("phase", PHASES, ids=str)
async def test_async_graph_runs_in_every_phase_official_to_postgres(tmp_path, langgraph_redis_url, pg_url, phase):
    async with aopen_saver(langgraph_redis_url) as old, async_saver("postgres", pg_url=pg_url) as new:
        saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite")
        app = build_agent(saver)
        await arun_turn(app, "a1", "alpha")
        final = await arun_turn(app, "a1", "beta")
        assert final["results"] == expected_results("alpha", "beta")
        assert saver.secondary_failures.total() == 0
        read_store = new if phase in (Phase.READ_SWITCH, Phase.DECOMMISSION) else old
        latest = await read_store.aget_tuple(config("a1"))
        assert latest.checkpoint["channel_values"]["results"] == final["results"]
        if phase is not Phase.DECOMMISSION:
            assert await saver.aflush(timeout=30)
            assert (await acheck(old, new)).clean
