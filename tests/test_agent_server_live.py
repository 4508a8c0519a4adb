"""A real `langgraph dev` (langgraph-api, in-memory runtime) whose langgraph.json names
`dualsaver.agent_server.checkpointer`, driven with langgraph-sdk. After each step both stores
are read with the official savers and must hold the same checkpoints."""

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

import pytest

pytest.importorskip("langgraph_api")
from langgraph.checkpoint.postgres import PostgresSaver  # noqa: E402
from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402
from langgraph_sdk import get_client  # noqa: E402

from dualsaver import Phase  # noqa: E402
from dualsaver.control.record import open_phase_record  # noqa: E402

APP = Path(__file__).parent / "agent_server_app"
REPO = Path(__file__).parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# a capability the server found missing, an error or worse, a traceback
BAD_LINE = re.compile(r"Custom checkpointer missing|Traceback|\[\s*(error|critical|warning)\s*\]|^ERROR", re.I)
pytestmark = pytest.mark.slow


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
            except Exception:
                await asyncio.sleep(0.5)
        raise AssertionError(f"langgraph dev did not start:\n{self.text()}")

    def text(self) -> str:
        return ANSI.sub("", self.log.read_text(errors="replace"))

    def bad_lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if BAD_LINE.search(line)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _app(workdir: Path) -> None:
    (workdir / "graph.py").write_text((APP / "graph.py").read_text())
    (workdir / "langgraph.json").write_text(json.dumps({
        "dependencies": ["."],
        "graphs": {"chat": "./graph.py:graph"},
        "checkpointer": {"path": "dualsaver.agent_server.checkpointer"},
    }))


def _checkpoints(saver, thread_id: str) -> list[tuple[str, str, object]]:
    return sorted(
        (t.config["configurable"]["checkpoint_ns"], t.config["configurable"]["checkpoint_id"], t.metadata.get("run_id"))
        for t in saver.list({"configurable": {"thread_id": thread_id}})
    )


def _alike(sqlite_path: Path, pg_url: str, threads: list[str]) -> dict[str, list]:
    """Both stores through the official savers: the same checkpoints for every thread."""
    with SqliteSaver.from_conn_string(str(sqlite_path)) as old, PostgresSaver.from_conn_string(pg_url) as new:
        seen = {t: _checkpoints(old, t) for t in threads}
        assert seen == {t: _checkpoints(new, t) for t in threads}
    return seen


async def _wait(client, thread_id: str, run_id: str) -> None:
    await client.runs.join(thread_id, run_id)


async def test_dualsaver_under_langgraph_dev(tmp_path, pg_url, redis_url):
    _app(tmp_path)
    sqlite_path = tmp_path / "old.sqlite"
    settings = tmp_path / "dualsaver.toml"
    settings.write_text(
        f'[migration]\nwrite_behind = false\njournal = "{tmp_path}/journal.sqlite"\n'
        f'[stores]\nold = "sqlite:///{sqlite_path}"\nnew = "{pg_url}"\n'
        f'[control]\nurl = "{redis_url}"\npoll_interval = 0.2\n'
    )
    record = open_phase_record(redis_url)
    record.set_phase(Phase.SHADOW_WRITE, expected_version=0, by="test")
    env = {"DUALSAVER_SETTINGS": str(settings)}
    server = Server(tmp_path, env)
    try:
        await server.ready()
        client = server.client
        # chat turns
        thread = (await client.threads.create())["thread_id"]
        for text in ("hello", "again"):
            await client.runs.wait(thread, "chat", input={"messages": [text]})
        state = await client.threads.get_state(thread)
        assert state["values"]["messages"] == ["hello", "echo:hello", "again", "echo:again"]
        _alike(sqlite_path, pg_url, [thread])
        # interrupt and resume
        await client.runs.wait(thread, "chat", input={"messages": ["ask"]})
        assert (await client.threads.get_state(thread))["interrupts"]
        await client.runs.wait(thread, "chat", command={"resume": "blue"})
        assert (await client.threads.get_state(thread))["values"]["messages"][-1] == "answer:blue"
        _alike(sqlite_path, pg_url, [thread])
        # a run rolled back by the next one: its checkpoints leave both stores
        slow = await client.runs.create(thread, "chat", input={"messages": ["slow"]})
        await asyncio.sleep(1.5)
        second = await client.runs.create(thread, "chat", input={"messages": ["fast"]}, multitask_strategy="rollback")
        await _wait(client, thread, second["run_id"])
        seen = _alike(sqlite_path, pg_url, [thread])[thread]
        runs = {run for _, _, run in seen}
        assert slow["run_id"] not in runs and second["run_id"] in runs
        assert (await client.threads.get_state(thread))["values"]["messages"][-1] == "echo:fast"
        # copy, delete, prune (the in-memory runtime prunes by deleting)
        copy = (await client.threads.copy(thread))["thread_id"]
        assert _alike(sqlite_path, pg_url, [copy])[copy]
        await client.threads.delete(copy)
        assert _alike(sqlite_path, pg_url, [copy]) == {copy: []}
        other = (await client.threads.create())["thread_id"]
        await client.runs.wait(other, "chat", input={"messages": ["bye"]})
        await client.threads.prune([other], strategy="delete")
        assert _alike(sqlite_path, pg_url, [other]) == {other: []}
        # the phase moves through the control store while the server runs
        state = record.read()
        record.set_phase(Phase.BACKFILL, expected_version=state.version, by="test")
        await asyncio.sleep(1)
        await client.runs.wait(thread, "chat", input={"messages": ["in backfill"]})
        _alike(sqlite_path, pg_url, [thread])
    finally:
        server.stop()
    log = server.text()
    assert "agent_server_checkpointer" in log and "phase=shadow-write" in log
    assert "capabilities=['delete_for_runs', 'copy_thread', 'prune']" in log
    assert not server.bad_lines(), server.bad_lines()
    # a restart in read-switch: new answers, the conversation is whole
    state = record.read()
    record.set_phase(Phase.READ_SWITCH, expected_version=state.version, by="test", forced=True)
    server = Server(tmp_path, env)
    try:
        await server.ready()
        await server.client.runs.wait(thread, "chat", input={"messages": ["after restart"]})
        messages = (await server.client.threads.get_state(thread))["values"]["messages"]
        assert messages[-2:] == ["after restart", "echo:after restart"] and "echo:hello" in messages
        _alike(sqlite_path, pg_url, [thread])
    finally:
        server.stop()
    assert "phase=read-switch" in server.text()
    assert not server.bad_lines(), server.bad_lines()
