"""The rest of the checkpointer contract: allowlists, versions, lifecycle."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from dualsaver import DualSaver, Phase
from tests.faulty import Faulty
from tests.graphs import build_agent, expected_results, run_turn


def test_with_allowlist_derives_both_wrapped_savers(tmp_path):
    old = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=[("a", "B")]))
    new = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=[("a", "B")]))
    saver = DualSaver(old, new, journal=tmp_path / "j.sqlite")
    derived = saver.with_allowlist([("my.module", "Thing")])
    assert derived is not saver and isinstance(derived, DualSaver)
    assert derived.old is not old and derived.new is not new
    for wrapped in (derived.old, derived.new):
        assert ("my.module", "Thing") in wrapped.serde._allowed_msgpack_modules
    # The original is untouched, and the clone still routes and writes both stores.
    assert ("my.module", "Thing") not in old.serde._allowed_msgpack_modules
    final = run_turn(build_agent(derived), "t", "alpha")
    assert final["results"] == expected_results("alpha")
    assert derived.flush(timeout=30)
    assert derived.old.get_tuple({"configurable": {"thread_id": "t"}}) is not None
    assert derived.new.get_tuple({"configurable": {"thread_id": "t"}}) is not None


def test_context_manager_closes_the_secondary_pool(tmp_path):
    new = Faulty(InMemorySaver())
    with DualSaver(
        InMemorySaver(), new, journal=tmp_path / "j.sqlite", secondary_timeout=1, write_behind=False
    ) as saver:
        run_turn(build_agent(saver), "t", "alpha")
        assert saver._sync._pool is not None
    assert saver._sync._pool is None


def test_next_version_follows_the_primary_format(tmp_path):
    saver = DualSaver(InMemorySaver(), InMemorySaver(), journal=tmp_path / "j.sqlite")
    first = saver.get_next_version(None, None)
    second = saver.get_next_version(first, None)
    assert isinstance(first, str) and second > first
    assert saver.get_next_version(7, None) == 8  # an int-versioned thread stays int
    assert "shadow-write" in repr(saver) and saver.phase is Phase.SHADOW_WRITE


def test_sync_and_async_capabilities_are_judged_apart(tmp_path, pg_url):
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(pg_url) as pg:
        pg.setup()
        saver = DualSaver(pg, pg, journal=tmp_path / "j.sqlite")
        # A sync saver's native store also runs in worker threads: both forms are offered.
        assert "prune" in type(saver).__dict__ and "aprune" in type(saver).__dict__
        run_turn(build_agent(saver), "t", "alpha")
        saver.prune(["t"], strategy="delete")
        assert pg.get_tuple({"configurable": {"thread_id": "t"}}) is None


def test_from_settings_applies_the_file_and_lets_arguments_win(tmp_path, monkeypatch):
    monkeypatch.delenv("DUALSAVER_PHASE", raising=False)
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(
        '[migration]\nphase = "read-switch"\nstrict = true\nsecondary_timeout = 0.5\n'
        f'journal = "{tmp_path / "j.sqlite"}"\ncanary_percent = 25\nshadow_read_rate = 0.1\n'
    )
    saver = DualSaver.from_settings(InMemorySaver(), InMemorySaver(), settings)
    assert saver.phase is Phase.READ_SWITCH and "settings file" in saver.phase_origin
    assert (saver.strict, saver.secondary_timeout, saver.canary_percent, saver.shadow_read_rate) == (True, 0.5, 25, 0.1)
    pinned = DualSaver.from_settings(InMemorySaver(), InMemorySaver(), settings, strict=False, phase="backfill")
    assert pinned.strict is False and pinned.phase is Phase.BACKFILL


async def test_an_async_saver_offers_only_the_async_capabilities(tmp_path):
    """An async saver has no sync native store: the pair has aprune but no prune of its own."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as lite:
        saver = DualSaver(lite, lite, journal=tmp_path / "j.sqlite")
        names = type(saver).__dict__
        assert {"adelete_for_runs", "acopy_thread", "aprune"} <= set(names)
        assert not {"delete_for_runs", "copy_thread", "prune"} & set(names)


def test_what_is_not_a_store_is_named_when_a_composite_or_a_job_is_given_it(tmp_path):
    """A URL where a saver belongs (the commonest slip: the CLI takes URLs), None, or the
    other half's kind of store: a TypeError that names the argument and what to do, when the
    composite is built (before: accepted, then an AttributeError at the first write) or the
    job starts (before: an AttributeError from deep inside it). No password is shown."""
    import asyncio

    import pytest
    from langgraph.store.memory import InMemoryStore

    from dualsaver import DualStore, TieredSaver, backfill, check, repair
    from dualsaver.stores import aopen_saver

    url = "postgresql://app:s3cret@db/app"
    builds = [
        (lambda: DualSaver(InMemorySaver(), None, journal=tmp_path / "j"), "new must be a BaseCheckpointSaver, got NoneType"),
        (lambda: DualSaver(url, InMemorySaver()), "old must be a BaseCheckpointSaver, got the string"),
        (lambda: TieredSaver(InMemorySaver(), url), "open it with open_saver(url)"),
        (lambda: DualStore(InMemoryStore(), "sqlite:///s.sqlite"), "open it with open_item_store(url)"),
        (lambda: DualStore(InMemorySaver(), InMemoryStore()), "old must be a BaseStore, got InMemorySaver"),
        (lambda: check(url, "sqlite:///b.sqlite"), "open a URL with open_saver(url)"),
        (lambda: backfill(InMemorySaver(), None), "expected a checkpointer"),
        (lambda: repair(InMemorySaver(), 3, ["t"]), "got int"),
    ]
    for build, says in builds:
        with pytest.raises(TypeError) as raised:
            build()
        assert says in str(raised.value) and "s3cret" not in str(raised.value)

    async def sync_check_of_async_savers() -> str:
        async with aopen_saver(f"sqlite:///{tmp_path / 'a.sqlite'}") as a, \
                aopen_saver(f"sqlite:///{tmp_path / 'b.sqlite'}") as b:
            with pytest.raises(TypeError) as raised:
                check(a, b)
            return str(raised.value)

    assert "use the async form (acheck" in asyncio.run(sync_check_of_async_savers())
