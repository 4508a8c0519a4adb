"""Any saver by factory: ``python:package.module:factory`` store URLs.

A factory saver is copied and checked through its public API only, so results and reports
say the copy is approximate and why; the rest of the contract holds (re-runs add nothing,
the check is clean after a copy, repair brings a damaged copy back). Tested with a saver
module the test writes itself, and with the official LangGraph Redis saver, whose public
reads hand back LangChain messages in their serialized form, Sends as dicts and special
writes in its own order: the check still compares by meaning.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from dualsaver import StoreURLError, abackfill, acheck, backfill, check, repair, repairs_from_report
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.report import to_json, to_markdown
from dualsaver.stores import aopen_saver, native_for, open_saver
from dualsaver.stores.urls import parse_store_url
from tests.graphs import build_agent, config, run_turn
from tests.langgraph_redis_support import plain_client

LEDGER = '''
"""The application's own saver module: a saver dualsaver has no adapter for."""
import contextlib
from tests.backfill_support import OpaqueSaver

EVENTS = []


class LedgerSaver(OpaqueSaver):
    def delete_thread(self, thread_id):
        self.inner.delete_thread(thread_id)


@contextlib.contextmanager
def make():
    EVENTS.append("enter")
    yield LedgerSaver()
    EVENTS.append("exit")
'''


@pytest.fixture
def ledger_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "ledger_saver.py").write_text(textwrap.dedent(LEDGER))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ledger_saver", None)
    import ledger_saver

    yield ledger_saver
    sys.modules.pop("ledger_saver", None)


def test_factory_urls_parse_and_refuse_what_they_cannot_open(ledger_module, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_REDIS_URL", "redis://127.0.0.1:1/0")  # never connected to
    assert parse_store_url("python:ledger_saver:make").target == "ledger_saver:make"
    for bad in ("python:ledger_saver", "python::make", "python:a b:make", "python:mod:not-a-name"):
        with pytest.raises(StoreURLError, match="use python:package.module:factory"):
            parse_store_url(bad)
    cases = {
        "python:no_such_module_x:make": "cannot import no_such_module_x",
        "python:ledger_saver:missing": "no callable 'missing'",
        "python:tests.factory_savers:not_a_saver": "not a checkpoint saver",
        "python:tests.factory_savers:official_async": "open it with aopen_saver",
    }
    for url, reason in cases.items():
        with pytest.raises(StoreURLError, match=reason), open_saver(url):
            pass
    with pytest.raises(StoreURLError, match="serializer included"):
        with open_saver("python:ledger_saver:make", serde=object()):
            pass


def test_a_saver_module_the_test_writes(ledger_module, sqlite_path: Path, tmp_path: Path) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver("python:ledger_saver:make") as new:
        assert ledger_module.EVENTS == ["enter"] and type(new).__name__ == "LedgerSaver"
        assert native_for(new).exact is False  # the public API, as a factory URL promises
        agent = build_agent(old)
        for t in ("t1", "t2", "t3"):
            run_turn(agent, t, t)
        result = backfill(old, new, state_path=":memory:")
        assert not result.exact and result.checkpoints > 0 and result.failed == 0
        assert "APPROXIMATE" in result.summary() and "task_path" in result.summary()
        assert backfill(old, new, state_path=":memory:", resume=False).checkpoints == 0
        report = check(old, new)
        assert report.clean
        summary = json.loads(to_json(report))["summary"]
        assert summary["exact"] == {"old": True, "new": False}
        assert "public API" in to_markdown(report)

        new.delete_thread("t2")
        damaged = check(old, new)
        assert {d.kind for d in damaged.divergences} == {"missing_in_new"}
        repaired = repair(old, new, repairs=repairs_from_report(damaged))
        assert repaired.ok and not repaired.exact and "approximate copy" in repaired.summary()
        assert check(old, new).clean
    assert ledger_module.EVENTS == ["enter", "exit"]


def _messages_and_agents(saver) -> None:
    agent = build_agent(saver)  # a subgraph, Send branches, an interrupt
    for t in ("agent-1", "agent-2"):
        run_turn(agent, t, t)
    agent.invoke({"topic": "waiting"}, config("agent-waiting"))
    support = build_support_agent(saver)  # LangChain messages
    for question in QUESTIONS[:2]:
        say(support, "support-1", question)


def test_the_official_saver_by_factory(langgraph_redis_url: str, sqlite_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_REDIS_URL", langgraph_redis_url.replace("redis+langgraph://", "redis://"))
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver("python:tests.factory_savers:official") as new:
        _messages_and_agents(old)
        result = backfill(old, new, state_path=":memory:")
        assert not result.exact and result.failed == 0 and result.checkpoints > 0
        # Its public reads: messages as lc envelopes, Sends as dicts, special writes in another order
        raw = [t.checkpoint["channel_values"] for t in new.list(config("support-1"))]
        assert any(isinstance(m, dict) and m.get("lc") for v in raw for m in v.get("messages", []))
        assert check(old, new).clean  # ... all equal by meaning
        assert backfill(old, new, state_path=":memory:", resume=False).checkpoints == 0
        with plain_client(langgraph_redis_url) as client:  # a real difference is still one
            key = sorted(client.scan_iter("checkpoint:support-1:__empty__:*"))[-1]
            client.execute_command("JSON.SET", key, "$.checkpoint.channel_values.messages[0].kwargs.content", '"edited"')
        kinds = {d.kind for d in check(old, new).divergences}
        assert kinds == {"checkpoint_mismatch"}


async def test_the_official_async_saver_by_async_factory(langgraph_redis_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_REDIS_URL", langgraph_redis_url.replace("redis+langgraph://", "redis://"))
    async with aopen_saver(f"sqlite:///{tmp_path / 'a.sqlite'}") as old:
        agent = build_agent(old)
        await agent.ainvoke({"topic": "x"}, config("a-1"))
        async with aopen_saver("python:tests.factory_savers:official_async") as new:
            assert type(new).__name__ == "AsyncRedisSaver" and new.loop is not None
            result = await abackfill(old, new, state_path=":memory:")
            assert not result.exact and result.checkpoints > 0 and result.failed == 0
            report = await acheck(old, new)
            assert report.clean, report.divergences
            # And back, the factory saver as the source: a copy through the public API keeps
            # checkpoints, metadata and each task's writes in order, but not the writes'
            # task_path and idx, which an exact check of two SQLite stores then reports.
            async with aopen_saver(f"sqlite:///{tmp_path / 'b.sqlite'}") as back:
                result = await abackfill(new, back, state_path=":memory:")
                assert not result.exact and result.failed == 0
                assert (await acheck(new, back)).clean
                lost = (await acheck(old, back)).divergences
                assert lost and {d.kind for d in lost} == {"writes_mismatch"}
                assert all(f["old"]["task_path"] and not f["new"]["task_path"] for d in lost for f in d.detail["fields"]
                           if f["old"] and f["new"])
