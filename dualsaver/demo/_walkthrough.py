"""`dualsaver demo`: a full migration on embedded stores, narrated step by step.

Old is an SQLite file; new is an embedded PostgreSQL the demo starts itself (or an
embedded Redis with `--new redis`, or the official LangGraph Redis saver on an embedded
Redis 8 with RedisJSON and RediSearch with `--new langgraph-redis`). A real LangGraph support agent keeps talking while
the migration walks its phases: shadow-write, backfill + check, read-switch, decommission.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from dualsaver.checker import check
from dualsaver.control.phase import Phase
from dualsaver.demo.app import QUESTIONS, build_support_agent, say
from dualsaver.migrate import backfill, repair, repairs_from_report
from dualsaver.redact import redact
from dualsaver.report import write_reports
from dualsaver.saver import DualSaver
from dualsaver.stores import open_saver


class Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()

    def step(self, title: str) -> None:
        print(f"\n== {title}", file=self.out, flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", file=self.out, flush=True)


def _threads(saver: Any) -> set[str]:
    return {t.config["configurable"]["thread_id"] for t in saver.list(None)}


def _checkpoints(saver: Any) -> int:
    return sum(1 for _ in saver.list(None))


def _talk(app: Any, threads: range, turns: int, offset: int = 0) -> int:
    spoken = 0
    for n in threads:
        for turn in range(turns):
            say(app, f"customer-{n:03d}", QUESTIONS[(offset + turn) % len(QUESTIONS)])
            spoken += 1
    return spoken


@contextlib.contextmanager
def _new_store(kind: str, workdir: Path, narrator: Narrator) -> Iterator[tuple[Any, str]]:
    """Start the embedded server for `new` and open a saver on it."""
    if kind == "redis":
        from dualsaver.embedded import EmbeddedRedis

        server: Any = EmbeddedRedis(appendonly=True, data_dir=workdir / "redis")
        label = "Redis (embedded, started by the demo)"
    elif kind == "langgraph-redis":
        from dualsaver.embedded import EmbeddedRedisStack

        server = EmbeddedRedisStack(appendonly=True, data_dir=workdir / "redis-stack")
        label = "the official LangGraph Redis saver on Redis 8 + RedisJSON + RediSearch (embedded)"
    else:
        from dualsaver.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(data_dir=workdir / "postgres", durable=True)
        label = "PostgreSQL (embedded, started by the demo)"
    started = time.perf_counter()
    with server:
        urls = {"redis": lambda: server.url, "langgraph-redis": lambda: server.langgraph_url}
        url = urls.get(kind, lambda: server.create_database("dualsaver_demo"))()
        narrator.say(f"new: {label} at {redact(url)} ({time.perf_counter() - started:.1f}s to start)")
        with open_saver(url) as saver:
            yield saver, url


def run_demo(*, new_kind: str = "postgres", workdir: Path, conversations: int = 12, out: TextIO = sys.stdout) -> int:
    n = Narrator(out)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    print(f"dualsaver demo: moving a support agent's memory from SQLite to {new_kind}", file=out)
    n.say(f"work dir: {workdir} (reports and data stay here)")
    n.say(f"old: SQLite at {workdir / 'old.sqlite'}")
    with open_saver(f"sqlite:///{workdir / 'old.sqlite'}") as old, _new_store(new_kind, workdir, n) as (new, _):
        half = conversations // 2

        n.step("before: the agent runs on SQLite alone")
        turns = _talk(build_support_agent(old), range(half), 3)
        n.say(f"{turns} turns in {half} conversations; old holds {_checkpoints(old)} checkpoints")

        saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=workdir / "journal.sqlite")
        app = build_support_agent(saver)
        n.step("phase shadow-write: every write goes to old first, then a copy to new (in the background)")
        turns = _talk(app, range(half - 2, conversations), 2, offset=3)
        saver.flush(timeout=60)  # new's copies are written behind the agent's back: let them land
        n.say(f"{turns} more turns; old: {len(_threads(old))} threads, new: {len(_threads(new))} threads")
        n.say("new has only what it saw live; the history before the switch is still missing")

        n.step("phase backfill: copying history old -> new while the agent keeps talking")
        saver.phase = Phase.BACKFILL
        result = backfill(old, new, state_path=workdir / "backfill-state.sqlite")
        n.say(result.summary().replace("\n", "\n   "))
        _talk(app, range(2), 1, offset=4)

        n.step("check: diffing both stores before anyone switches reads")
        report = check(old, new)
        paths = {"json_path": workdir / "report.json", "html_path": workdir / "report.html",
                 "markdown_path": workdir / "report.md"}
        write_reports(report, **paths)
        n.say(f"safe to switch reads: {'yes' if report.clean else 'no'}"
              f" ({report.summary['threads_compared']} threads,"
              f" {report.summary['checkpoints_compared']} checkpoints compared)")
        n.say(f"report for people: {paths['html_path']}")

        n.step("an incident: someone deletes a conversation from new by hand")
        new.delete_thread("customer-001")
        report = check(old, new)
        kinds = sorted({d.kind for d in report.divergences})
        verdict = "yes" if report.clean else "no"
        found = f"{len(report.divergences)} divergence(s): {', '.join(kinds)}"
        n.say(f"check: safe to switch reads: {verdict}; found {found}")
        divergent = {key: path.with_name(f"incident-{path.name}") for key, path in paths.items()}
        write_reports(report, **divergent)  # kept: what a report with findings looks like
        n.say(f"that report, kept for a look: {divergent['html_path']}")
        repaired = repair(old, new, repairs=repairs_from_report(report, source="old"))
        n.say(f"repair copied {len(repaired.outcomes)} thread(s) again from old, the source of truth in this phase")
        report = check(old, new)
        write_reports(report, **paths)
        n.say(f"check after repair: safe to switch reads: {'yes' if report.clean else 'no'}")
        if not report.clean:
            n.say("the check is not clean: stopping before read-switch")
            return 1

        n.step("phase read-switch: reads come from new; old still gets every write for rollback")
        saver.phase = Phase.READ_SWITCH
        state = say(app, "customer-000", "Is my refund done?")
        n.say(f"customer-000 now has {len(state['messages'])} messages, read back from new")
        n.say(f"old and new both hold {_checkpoints(old)} / {_checkpoints(new)} checkpoints")

        n.step("phase decommission: old is no longer touched")
        saver.phase = Phase.DECOMMISSION
        before = _checkpoints(old)
        _talk(app, range(conversations), 1, offset=1)
        n.say(f"{conversations} more turns; old unchanged at {before} checkpoints, new at {_checkpoints(new)}")
        n.say(f"secondary failures during the migration: {saver.secondary_failures.total()}")
        saver.close()
    n.step(f"done in {time.perf_counter() - n.started:.1f}s: every conversation now lives in {new_kind}")
    return 0

