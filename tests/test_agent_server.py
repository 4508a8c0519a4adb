"""`dualsaver.agent_server.checkpointer` and `.store`: the langgraph.json factories, built from
the settings file and the environment alone, as LangGraph Agent Server enters them."""

from __future__ import annotations

import asyncio

import pytest
from langgraph.checkpoint.conformance.capabilities import DetectedCapabilities

from dualsaver import DualSaver, Phase, TieredSaver
from dualsaver.agent_server import SyncStoreInThreads, checkpointer, store
from dualsaver.control.record import open_phase_record
from dualsaver.errors import ServerStartError
from dualsaver.items import open_item_store
from dualsaver.saver import DualStore
from langgraph.store.base import BaseStore, PutOp
from langgraph.store.memory import InMemoryStore

EXTENDED = {"delete_for_runs", "copy_thread", "prune"}


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("DUALSAVER_SETTINGS", "DUALSAVER_PHASE", "DUALSAVER_CONTROL_URL", "DUALSAVER_PHASE_RECORD",
                 "DUALSAVER_OLD_URL", "DUALSAVER_NEW_URL", "DUALSAVER_DURABLE_URL", "DUALSAVER_HOT_URL",
                 "DUALSAVER_STORE_OLD_URL", "DUALSAVER_STORE_NEW_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the default journal lands here
    return monkeypatch


async def test_a_migration_from_the_environment_alone(env, tmp_path, pg_url, capsys):
    env.setenv("DUALSAVER_OLD_URL", f"sqlite:///{tmp_path}/old.sqlite")
    env.setenv("DUALSAVER_NEW_URL", pg_url)
    env.setenv("DUALSAVER_PHASE", "read-switch")
    async with checkpointer() as saver:
        assert isinstance(saver, DualSaver) and saver.phase is Phase.READ_SWITCH
        assert {c.value for c in DetectedCapabilities.from_instance(saver).detected} >= EXTENDED
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        assert await saver.aget_tuple(config) is None
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "agent_server_checkpointer" in text and "read-switch" in text
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in text


async def test_tiered_mode_from_the_settings_file(env, tmp_path, pg_url, redis_url):
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(f'[tiered]\nenabled = true\ndurable = "{pg_url}"\nhot = "{redis_url}"\nhot_timeout = 2.0\n')
    env.setenv("DUALSAVER_SETTINGS", str(settings))
    async with checkpointer() as saver:
        assert isinstance(saver, TieredSaver) and saver.hot_timeout == 2.0
        assert {c.value for c in DetectedCapabilities.from_instance(saver).detected} >= EXTENDED


@pytest.mark.parametrize("case", ["missing-url", "bad-phase", "unreachable"])
async def test_a_misconfiguration_fails_start_up_with_one_line(env, tmp_path, case, capsys):
    env.setenv("DUALSAVER_OLD_URL", f"sqlite:///{tmp_path}/old.sqlite")
    if case != "missing-url":
        env.setenv("DUALSAVER_NEW_URL", "postgresql://u:hunter2@127.0.0.1:1/db" if case == "unreachable"
                   else f"sqlite:///{tmp_path}/new.sqlite")
    if case == "bad-phase":
        env.setenv("DUALSAVER_PHASE", "half-way")
    with pytest.raises(ServerStartError) as caught:
        async with checkpointer():
            pass
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message
    assert {"missing-url": "DUALSAVER_NEW_URL", "bad-phase": "half-way", "unreachable": "127.0.0.1"}[case] in message
    assert caught.value.__cause__ is None


INDEX = '[store.index]\ndims = 8\nfields = ["text"]\nembed = "python:tests.items_support:embed"\n'


def _store_settings(tmp_path, extra: str = "") -> str:
    path = tmp_path / "dualsaver.toml"
    path.write_text(f'[migration]\njournal = "{tmp_path}/journal.sqlite"\n{extra}{INDEX}')
    return str(path)


async def test_a_store_from_settings_and_environment(env, tmp_path, pg_url, capsys):
    """SQLite with an index (served from worker threads) to PostgreSQL with pgvector: what goes
    in through the factory's store is in both stores, read back by the official stores, and the
    index answers semantic searches; on exit the write-behind copy has landed."""
    env.setenv("DUALSAVER_SETTINGS", _store_settings(tmp_path))
    env.setenv("DUALSAVER_STORE_OLD_URL", f"sqlite:///{tmp_path}/store.sqlite")
    env.setenv("DUALSAVER_STORE_NEW_URL", pg_url)
    async with store() as dual:
        assert isinstance(dual, DualStore) and dual.phase is Phase.SHADOW_WRITE
        assert isinstance(dual.old, SyncStoreInThreads)
        await dual.aput(("users", "u1"), "likes", {"text": "apple river"})
        await dual.aput(("users", "u1"), "lives", {"text": "stone tiger piano"})
        assert (await dual.aget(("users", "u1"), "likes")).value == {"text": "apple river"}
        found = await dual.asearch(("users",), query="apple river")
        assert found[0].key == "likes" and found[0].score is not None
    for url in (f"sqlite:///{tmp_path}/store.sqlite", pg_url):
        index = {"dims": 8, "fields": ["text"], "embed": "python:tests.items_support:embed"}
        with open_item_store(url, index=index) as official:
            assert {i.key: i.value for i in official.search(("users", "u1"))} == {
                "likes": {"text": "apple river"}, "lives": {"text": "stone tiger piano"}}
            assert official.search(("users",), query="apple river")[0].key == "likes"
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "agent_server_store" in text and "shadow-write" in text and "dims" in text
    assert pg_url.split(":")[2].split("@")[0] not in text


async def test_the_store_follows_the_checkpointers_phase(env, tmp_path, pg_url, redis_url, capsys):
    """Entered after the checkpointer (as the server does), the store reads the checkpointer's
    own phase source: a phase set on the control store moves both at once."""
    settings = _store_settings(tmp_path, f'[control]\nurl = "{redis_url}"\npoll_interval = 0.1\n')
    env.setenv("DUALSAVER_SETTINGS", settings)
    env.setenv("DUALSAVER_OLD_URL", f"sqlite:///{tmp_path}/old.sqlite")
    env.setenv("DUALSAVER_NEW_URL", f"sqlite:///{tmp_path}/new.sqlite")
    env.setenv("DUALSAVER_STORE_OLD_URL", f"sqlite:///{tmp_path}/store-old.sqlite")
    env.setenv("DUALSAVER_STORE_NEW_URL", pg_url)
    record = open_phase_record(redis_url)
    record.set_phase(Phase.SHADOW_WRITE, expected_version=0, by="test")
    async with checkpointer() as saver, store() as dual:
        assert dual.phase_source is saver.phase_source
        record.set_phase(Phase.BACKFILL, expected_version=record.read().version, by="test")
        for _ in range(100):
            if saver.phase is Phase.BACKFILL:
                break
            await asyncio.sleep(0.05)
        assert saver.phase is dual.phase is Phase.BACKFILL
    async with store() as alone:  # no checkpointer running: its own source, the same record
        assert alone.phase is Phase.BACKFILL and alone.phase_source is not saver.phase_source
    text = capsys.readouterr()
    assert "shares_checkpointer_phase=True" in text.out + text.err


@pytest.mark.parametrize("case", ["missing-url", "bad-embed", "unreachable"])
async def test_a_store_misconfiguration_fails_start_up_with_one_line(env, tmp_path, case):
    env.setenv("DUALSAVER_SETTINGS", _store_settings(tmp_path))
    env.setenv("DUALSAVER_STORE_OLD_URL", f"sqlite:///{tmp_path}/store.sqlite")
    if case == "bad-embed":
        (tmp_path / "dualsaver.toml").write_text(INDEX.replace("tests.items_support:embed", "tests.nowhere:embed"))
    if case != "missing-url":
        env.setenv("DUALSAVER_STORE_NEW_URL", "postgresql://u:hunter2@127.0.0.1:1/db" if case == "unreachable"
                   else f"sqlite:///{tmp_path}/new.sqlite")
    with pytest.raises(ServerStartError) as caught:
        async with store():
            pass
    message = str(caught.value)
    assert message.startswith("dualsaver store not started") or case == "missing-url"
    assert "\n" not in message and "hunter2" not in message
    wanted = {"missing-url": "DUALSAVER_STORE_NEW_URL", "bad-embed": "tests.nowhere", "unreachable": "127.0.0.1"}
    assert wanted[case] in message
    assert caught.value.__cause__ is None


async def test_workers_starting_together_set_up_the_stores_once(env, tmp_path, pg_url_factory):
    """Four workers enter the factory at once over fresh databases: PostgreSQL's migrations
    (pgvector's index among them) run under the advisory lock, and every worker starts."""
    env.setenv("DUALSAVER_SETTINGS", _store_settings(tmp_path))
    env.setenv("DUALSAVER_STORE_OLD_URL", pg_url_factory())
    env.setenv("DUALSAVER_STORE_NEW_URL", pg_url_factory())

    async def worker(n: int) -> str:
        async with store() as dual:
            await dual.aput(("workers",), f"w{n}", {"text": f"worker {n}"})
            return (await dual.aget(("workers",), f"w{n}")).value["text"]

    assert await asyncio.gather(*(worker(n) for n in range(4))) == [f"worker {n}" for n in range(4)]


class _RefusesWrites(BaseStore):
    """A long-term store that answers reads and refuses every write (a full disk). Not an
    InMemoryStore itself: DualStore would write one below its API (`ItemCopier.mirror`)."""

    def __init__(self) -> None:
        self.inner = InMemoryStore()

    def batch(self, ops):
        raise NotImplementedError

    async def abatch(self, ops):
        ops = list(ops)
        if any(isinstance(op, PutOp) for op in ops):
            raise OSError("no space left on device")
        return await self.inner.abatch(ops)


async def test_journaling_makes_no_blocking_call_on_the_event_loop(env, tmp_path):
    """`langgraph dev` raises on any blocking call made on its event loop (blockbuster): a
    secondary miss journaled, and a read-switch fallback asking the journal, go to a worker
    thread (the journal is SQLite), so the request that met them is answered."""
    blockbuster_ctx = pytest.importorskip("blockbuster").blockbuster_ctx

    old = InMemoryStore()
    dual = DualStore(old, _RefusesWrites(), Phase.SHADOW_WRITE, journal=tmp_path / "journal.sqlite",
                     write_behind=False)
    with blockbuster_ctx():
        await dual.aput(("users",), "u1", {"text": "apple"})  # new misses: journaled
        dual.phase = Phase.READ_SWITCH
        assert (await dual.aget(("users",), "u1")).value == {"text": "apple"}  # falls back to old
    assert dual.secondary_failures
    assert {e.operation for e in dual.journal.pending()} == {"store.put"}
    await dual.aclose()
