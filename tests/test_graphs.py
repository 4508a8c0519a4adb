"""Real compiled graphs (subgraph, parallel Send branches, interrupt) through every phase."""

from __future__ import annotations

import pytest

from dualsaver import DualSaver, Phase
from tests.graphs import arun_turn, build_agent, config, expected_results, run_turn
from tests.savers import async_saver, sync_saver

PHASES = list(Phase)
# Adjacent phases in both directions: the moves a rolling restart or a rollback makes.
MOVES = [(a, b) for a, b in zip(PHASES, PHASES[1:])] + [
    (Phase.READ_SWITCH, Phase.BACKFILL),
    (Phase.BACKFILL, Phase.SHADOW_WRITE),
]


def _namespaces(saver, thread_id: str) -> set[str]:
    return {t.config["configurable"]["checkpoint_ns"] for t in saver.list(config(thread_id))}


@pytest.mark.parametrize("phase", PHASES, ids=str)
def test_graph_runs_in_every_phase_sqlite_to_postgres(tmp_path, pg_url, phase):
    with sync_saver("sqlite", tmp=tmp_path) as old, sync_saver("postgres", pg_url=pg_url) as new:
        saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite")
        app = build_agent(saver)
        first = run_turn(app, "t1", "alpha")
        second = run_turn(app, "t1", "beta", approve=False)
        assert first["results"] == expected_results("alpha")
        assert second["results"] == expected_results("alpha", "beta")
        assert second["log"][-2:] == ["approved=False", "finish"]
        assert saver.flush(timeout=30)  # shadow-write writes new behind the caller's back
        assert saver.secondary_failures.total() == 0
        written = [old, new] if phase is not Phase.DECOMMISSION else [new]
        for store in written:
            # The subgraph checkpoints under their own namespace, in every written store.
            assert any(ns.startswith("review:") for ns in _namespaces(store, "t1"))
            assert store.get_tuple(config("t1")).checkpoint["channel_values"]["results"] == second["results"]
        if phase is Phase.DECOMMISSION:
            assert not list(old.list(config("t1")))


@pytest.mark.parametrize("move", MOVES, ids=lambda m: f"{m[0]}-to-{m[1]}")
def test_interrupted_thread_resumes_after_phase_change(tmp_path, pg_url, move):
    before, after = move
    with sync_saver("sqlite", tmp=tmp_path) as old, sync_saver("postgres", pg_url=pg_url) as new:
        saver = DualSaver(old, new, before, journal=tmp_path / "j.sqlite")
        app = build_agent(saver)
        cfg = config("t1")
        app.invoke({"topic": "alpha"}, cfg)
        assert app.get_state(cfg).next == ("approve",)
        saver.phase = after
        from langgraph.types import Command

        final = app.invoke(Command(resume=True), cfg)
        assert final["results"] == expected_results("alpha")
        assert final["log"] == ["plan", "approved=True", "finish"]
        assert app.get_state(cfg).next == ()


@pytest.mark.parametrize("phase", PHASES, ids=str)
async def test_async_graph_runs_in_every_phase_postgres_to_sqlite(tmp_path, pg_url, phase):
    async with async_saver("postgres", pg_url=pg_url) as old, async_saver("sqlite", tmp=tmp_path) as new:
        saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite")
        app = build_agent(saver)
        await arun_turn(app, "a1", "alpha")
        final = await arun_turn(app, "a1", "beta")
        assert final["results"] == expected_results("alpha", "beta")
        assert saver.secondary_failures.total() == 0
        read_store = new if phase in (Phase.READ_SWITCH, Phase.DECOMMISSION) else old
        latest = await read_store.aget_tuple(config("a1"))
        assert latest.checkpoint["channel_values"]["results"] == final["results"]


async def test_async_interrupt_resumes_across_every_forward_step(tmp_path):
    """One thread walks all four phases, interrupted at each boundary."""
    async with async_saver("sqlite", tmp=tmp_path) as old, async_saver("memory") as new:
        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        app = build_agent(saver)
        from langgraph.types import Command

        topics = ["a", "b", "c", "d"]
        for phase, topic in zip(PHASES, topics):
            saver.phase = phase
            await app.ainvoke({"topic": topic}, config("walk"))
            if phase is not Phase.DECOMMISSION:
                saver.phase = PHASES[PHASES.index(phase) + 1]
            await app.ainvoke(Command(resume=True), config("walk"))
        state = await app.aget_state(config("walk"))
        assert state.values["results"] == expected_results(*topics)
