"""A real `langgraph dev` (langgraph-api, in-memory runtime) whose langgraph.json names
`dualsaver.agent_server.checkpointer` and `dualsaver.agent_server.store`, driven with
langgraph-sdk. After each step both stores are read with the official savers (and the official
long-term stores) and must hold the same checkpoints (and items). One server per scenario:
DualSaver(SQLite, PostgreSQL) with a phase change and a restart in read-switch,
DualSaver(PostgreSQL, Redis), TieredSaver(PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("langgraph_api")
from langgraph_sdk import get_client

from dualsaver import Phase
from dualsaver.control.record import open_phase_record
from dualsaver.items import open_item_store
from dualsaver.stores import open_saver

APP = Path(__file__).parent / "agent_server_app"
REPO = Path(__file__).parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# a capability the server found missing, an error or worse, a traceback
BAD_LINE = re.compile(r"Custom checkpointer missing|Traceback|\[\s*(error|critical|warning)\s*\]|^ERROR", re.IGNORECASE)
pytestmark = pytest.mark.slow
# the long-term stores' index: a deterministic embedding, no model
INDEX = {"dims": 8, "fields": ["text"], "embed": "python:tests.items_support:embed"}
INDEX_TOML = '[store.index]\ndims = 8\nfields = ["text"]\nembed = "python:tests.items_support:embed"\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`langgraph dev` in its own process group on loopback; its log kept in a file."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.log = workdir / f"server-{self.port}.log"
        bin_dir = Path(sys.executable).parent
        self.proc = subprocess.Popen(
            [str(bin_dir / "langgraph"), "dev", "--host", "127.0.0.1", "--port", str(self.port), "--no-browser",
             "--no-reload", "--config", str(workdir / "langgraph.json")],
            cwd=workdir, env={**os.environ, **env, "PYTHONPATH": str(REPO)}, start_new_session=True,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        self.client = get_client(url=f"http://127.0.0.1:{self.port}")

    async def ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()
            try:
                await self.client.assistants.search()
                return
            except (httpx.HTTPError, OSError):  # not listening yet
                await asyncio.sleep(0.5)
        raise AssertionError(f"langgraph dev did not start:\n{self.text()}")

    def text(self) -> str:
        return ANSI.sub("", self.log.read_text(errors="replace"))

    def bad_lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if BAD_LINE.search(line)]

    def assert_clean(self) -> None:
        """No error, warning or traceback in the log; the message has the whole lines (pytest
        cuts a list in a message short)."""
        bad = self.bad_lines()
        assert not bad, "\n".join(bad)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _app(workdir: Path, store: bool = True) -> None:
    (workdir / "graph.py").write_text((APP / "graph.py").read_text())
    config: dict = {
        "dependencies": ["."],
        "graphs": {"chat": "./graph.py:graph"},
        "checkpointer": {"path": "dualsaver.agent_server.checkpointer"},
    }
    if store:
        config["store"] = {"path": "dualsaver.agent_server.store"}
    (workdir / "langgraph.json").write_text(json.dumps(config))


def _checkpoints(saver, thread_id: str) -> list[tuple[str, str, object]]:
    return sorted(
        (t.config["configurable"]["checkpoint_ns"], t.config["configurable"]["checkpoint_id"], t.metadata.get("run_id"))
        for t in saver.list({"configurable": {"thread_id": thread_id}})
    )


def _read_both(urls: tuple[str, str], threads: list[str]) -> tuple[dict, dict]:
    with open_saver(urls[0]) as first, open_saver(urls[1]) as second:
        return {t: _checkpoints(first, t) for t in threads}, {t: _checkpoints(second, t) for t in threads}


async def _alike(urls: tuple[str, str], threads: list[str], settle: float = 0.0) -> dict[str, list]:
    """Both stores through their savers (the official ones for SQLite and PostgreSQL): the
    same checkpoints for every thread. `settle`: seconds a write-behind copy may still take."""
    deadline = time.monotonic() + settle
    while True:
        first, second = _read_both(urls, threads)
        if first == second or time.monotonic() >= deadline:
            assert first == second
            return first
        await asyncio.sleep(0.2)


def _items(url: str) -> tuple[dict, list[str]]:
    """A long-term store read by the official store: every memory, and what a semantic search
    ranks first (the vectors answer alike)."""
    with open_item_store(url, index=INDEX) as official:
        items = {(tuple(i.namespace), i.key): i.value for i in official.search(("memories",), limit=1000)}
        return items, [i.key for i in official.search(("memories",), query="apple river", limit=1)]


async def _items_alike(urls: tuple[str, str], settle: float = 0.0) -> dict:
    deadline = time.monotonic() + settle
    while True:
        first, second = _items(urls[0]), _items(urls[1])
        if first == second or time.monotonic() >= deadline:
            assert first == second
            return first[0]
        await asyncio.sleep(0.2)


async def _last_message(client, thread: str, text: str) -> str:
    await client.runs.wait(thread, "chat", input={"messages": [text]})
    return (await client.threads.get_state(thread))["values"]["messages"][-1]


async def _memories(client, thread: str, urls: tuple[str, str], settle: float = 0.0) -> None:
    """The graph writes and reads the store (`get_store()`, `runtime.store`), the SDK's store
    API puts, gets and searches; both stores end with the same items, read officially."""
    assert await _last_message(client, thread, "remember:apple river") == "remembered:apple river"
    await client.store.put_item(["memories", "sdk"], "fav", {"text": "stone tiger piano"})
    assert await _last_message(client, thread, "recall:stone tiger") == "recalled:stone tiger piano"
    assert (await client.store.get_item(["memories", "sdk"], "fav"))["value"] == {"text": "stone tiger piano"}
    found = (await client.store.search_items(["memories"], query="apple river", limit=1))["items"]
    assert [item["key"] for item in found] == ["apple-river"]
    assert await _items_alike(urls, settle) == {
        (("memories", "chat"), "apple-river"): {"text": "apple river"},
        (("memories", "sdk"), "fav"): {"text": "stone tiger piano"},
    }


async def _conversation(client, urls: tuple[str, str], settle: float = 0.0) -> str:
    """Chat, interrupt and resume, a rollback, copy, delete and prune; the stores compared
    after each step. Returns the conversation's thread."""
    thread = (await client.threads.create())["thread_id"]
    for text in ("hello", "again"):
        await client.runs.wait(thread, "chat", input={"messages": [text]})
    state = await client.threads.get_state(thread)
    assert state["values"]["messages"] == ["hello", "echo:hello", "again", "echo:again"]
    assert (await _alike(urls, [thread], settle))[thread]
    # interrupt and resume
    await client.runs.wait(thread, "chat", input={"messages": ["ask"]})
    assert (await client.threads.get_state(thread))["interrupts"]
    await client.runs.wait(thread, "chat", command={"resume": "blue"})
    assert (await client.threads.get_state(thread))["values"]["messages"][-1] == "answer:blue"
    await _alike(urls, [thread], settle)
    # a run rolled back by the next one: its checkpoints leave both stores
    slow = await client.runs.create(thread, "chat", input={"messages": ["slow"]})
    await asyncio.sleep(1.5)
    second = await client.runs.create(thread, "chat", input={"messages": ["fast"]}, multitask_strategy="rollback")
    await client.runs.join(thread, second["run_id"])
    runs = {run for _, _, run in (await _alike(urls, [thread], settle))[thread]}
    assert slow["run_id"] not in runs and second["run_id"] in runs
    assert (await client.threads.get_state(thread))["values"]["messages"][-1] == "echo:fast"
    # copy, delete, prune (the in-memory runtime prunes by deleting)
    copy = (await client.threads.copy(thread))["thread_id"]
    assert (await _alike(urls, [copy], settle))[copy]
    await client.threads.delete(copy)
    assert await _alike(urls, [copy], settle) == {copy: []}
    other = (await client.threads.create())["thread_id"]
    await client.runs.wait(other, "chat", input={"messages": ["bye"]})
    await client.threads.prune([other], strategy="delete")
    assert await _alike(urls, [other], settle) == {other: []}
    return thread


async def test_dualsaver_under_langgraph_dev(tmp_path, pg_url, redis_url):
    _app(tmp_path)
    sqlite_path = tmp_path / "old.sqlite"
    store_urls = (f"sqlite:///{tmp_path}/store.sqlite", pg_url)
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(
        f'[migration]\nwrite_behind = false\njournal = "{tmp_path}/journal.sqlite"\n'
        f'[stores]\nold = "sqlite:///{sqlite_path}"\nnew = "{pg_url}"\n'
        f'store_old = "{store_urls[0]}"\nstore_new = "{pg_url}"\n{INDEX_TOML}'
        f'[control]\nurl = "{redis_url}"\npoll_interval = 0.2\n'
    )
    record = open_phase_record(redis_url)
    record.set_phase(Phase.SHADOW_WRITE, expected_version=0, by="test")
    env = {"DUALSAVER_SETTINGS": str(settings)}
    server = Server(tmp_path, env)
    try:
        await server.ready()
        client = server.client
        urls = (f"sqlite:///{sqlite_path}", pg_url)
        thread = await _conversation(client, urls)
        await _memories(client, thread, store_urls)
        # the phase moves through the control store while the server runs: both halves follow
        state = record.read()
        record.set_phase(Phase.BACKFILL, expected_version=state.version, by="test")
        await asyncio.sleep(1)
        await client.runs.wait(thread, "chat", input={"messages": ["in backfill"]})
        await _alike(urls, [thread])
        assert await _last_message(client, thread, "remember:lemon orbit") == "remembered:lemon orbit"
        assert len(await _items_alike(store_urls)) == 3
    finally:
        server.stop()
    log = server.text()
    assert "agent_server_checkpointer" in log and "phase=shadow-write" in log
    assert "agent_server_store" in log and "shares_checkpointer_phase=True" in log
    assert "phase_changed" in log and "phase=backfill" in log
    assert "capabilities=['delete_for_runs', 'copy_thread', 'prune']" in log
    server.assert_clean()
    # a restart in read-switch: new answers, the conversation is whole; a memory and a
    # conversation only the old store holds (not backfilled) are found there and copied
    with open_item_store(store_urls[0], index=INDEX) as old_store:
        old_store.put(("memories", "before"), "old-only", {"text": "candle forest"})
    with open_saver(pg_url) as new_saver:  # and a conversation new lacks: read, then copied, from old
        new_saver.delete_thread(thread)
    state = record.read()
    record.set_phase(Phase.READ_SWITCH, expected_version=state.version, by="test", forced=True)
    server = Server(tmp_path, env)
    try:
        await server.ready()
        client = server.client
        await client.runs.wait(thread, "chat", input={"messages": ["after restart"]})
        messages = (await client.threads.get_state(thread))["values"]["messages"]
        assert messages[-2:] == ["after restart", "echo:after restart"] and "echo:hello" in messages
        await _alike(urls, [thread])
        # the store reads from new now: what was written in the other phases is there
        assert await _last_message(client, thread, "recall:lemon candle") == "recalled:lemon orbit"
        assert (await client.store.get_item(["memories", "sdk"], "fav"))["value"] == {"text": "stone tiger piano"}
        await client.store.put_item(["memories", "sdk"], "late", {"text": "forest cloud"})
        found = await client.store.get_item(["memories", "before"], "old-only")
        assert found["value"] == {"text": "candle forest"}
        assert len(await _items_alike(store_urls, settle=5.0)) == 5
    finally:
        server.stop()
    assert "phase=read-switch" in server.text()
    server.assert_clean()


async def test_postgres_to_redis_under_langgraph_dev(tmp_path, pg_url, langgraph_redis_url):
    """DualSaver(PostgreSQL, the official Redis saver) and DualStore(PostgreSQL, RedisStore), in
    shadow-write with the secondary written behind: every step lands in both, and the server
    finds every capability (Redis's through dualsaver's native adapter)."""
    _app(tmp_path)
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(f'[migration]\njournal = "{tmp_path}/journal.sqlite"\n{INDEX_TOML}')
    env = {"DUALSAVER_SETTINGS": str(settings), "DUALSAVER_OLD_URL": pg_url, "DUALSAVER_NEW_URL": langgraph_redis_url,
           "DUALSAVER_STORE_OLD_URL": pg_url, "DUALSAVER_STORE_NEW_URL": langgraph_redis_url}
    server = Server(tmp_path, env)
    try:
        await server.ready()
        thread = await _conversation(server.client, (pg_url, langgraph_redis_url), settle=5.0)
        await _memories(server.client, thread, (pg_url, langgraph_redis_url), settle=5.0)
    finally:
        server.stop()
    log = server.text()
    assert "agent_server_store" in log and "capabilities=['delete_for_runs', 'copy_thread', 'prune']" in log
    server.assert_clean()


async def test_tieredsaver_under_langgraph_dev(tmp_path, pg_url, redis_url, redis_server):
    """[tiered] enabled: PostgreSQL keeps everything, Redis answers; every step lands in both
    (the hot copy written behind, so compared once it settled). Then a restart with the hot
    store emptied: the durable one answers, the conversation goes on, and the hot store holds
    its newest checkpoint again."""
    _app(tmp_path, store=False)
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(f'[tiered]\nenabled = true\nhot_timeout = 2.0\n[migration]\njournal = "{tmp_path}/j.sqlite"\n')
    env = {"DUALSAVER_SETTINGS": str(settings), "DUALSAVER_DURABLE_URL": pg_url, "DUALSAVER_HOT_URL": redis_url}
    server = Server(tmp_path, env)
    try:
        await server.ready()
        thread = await _conversation(server.client, (pg_url, redis_url), settle=5.0)
    finally:
        server.stop()
    assert "agent_server_checkpointer" in server.text() and "TieredSaver" in server.text()
    assert "capabilities=['delete_for_runs', 'copy_thread', 'prune']" in server.text()
    server.assert_clean()
    redis_server.flushall()
    server = Server(tmp_path, env)
    try:
        await server.ready()
        messages = (await server.client.threads.get_state(thread))["values"]["messages"]
        assert "echo:hello" in messages and messages[-1] == "echo:fast"
        assert await _last_message(server.client, thread, "after restart") == "echo:after restart"
        deadline = time.monotonic() + 5.0
        while True:
            durable, hot = _read_both((pg_url, redis_url), [thread])
            if durable[thread][-1] in hot[thread] or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        assert durable[thread][-1] in hot[thread]
    finally:
        server.stop()
    server.assert_clean()
