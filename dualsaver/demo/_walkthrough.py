"""`dualsaver demo`: a full migration on embedded stores, narrated step by step.

Old is an SQLite file; new is an embedded PostgreSQL the demo starts itself (or an
embedded Redis with `--new redis`, or the official LangGraph Redis saver on an embedded
Redis 8 with RedisJSON and RediSearch with `--new langgraph-redis`). A real LangGraph support agent keeps talking while
the migration walks its phases: shadow-write, backfill + check, read-switch, decommission.
Its long-term store (what it remembers of each customer) moves with it, in the same phases:
SQLite to PostgreSQL, or to the official Redis store with `--new langgraph-redis`
(dualsaver's own Redis layout holds checkpoints only, so with `--new redis` the store stays).
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
from dualsaver.items import backfill_items, check_items, open_item_store
from dualsaver.migrate import backfill, repair, repairs_from_report
from dualsaver.redact import redact
from dualsaver.report import write_reports
from dualsaver.saver import DualSaver, DualStore
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


def _items(store: Any) -> int:
    return len(store.search(("customers",), limit=10_000))


def _talk(app: Any, threads: range, turns: int, offset: int = 0) -> int:
    spoken = 0
    for n in threads:
        for turn in range(turns):
            say(app, f"customer-{n:03d}", QUESTIONS[(offset + turn) % len(QUESTIONS)])
            spoken += 1
    return spoken


@contextlib.contextmanager
def _new_store(kind: str, workdir: Path, narrator: Narrator) -> Iterator[tuple[Any, str | None]]:
    """Start the embedded server for `new` and open a saver on it; the URL of the long-term
    store it can hold (None: dualsaver's Redis layout, checkpoints only)."""
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
        store_url = None if kind == "redis" else url  # the official stores: PostgresStore, RedisStore
        with open_saver(url) as saver:
            yield saver, store_url


@contextlib.contextmanager
def _long_term_stores(workdir: Path, new_url: str | None) -> Iterator[tuple[Any, Any]]:
    """The agent's long-term store on SQLite (old), and where it moves (new; None: it stays)."""
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(open_item_store(f"sqlite:///{workdir / 'old-store.sqlite'}"))
        new = None if new_url is None else stack.enter_context(open_item_store(new_url))
        yield old, new


def _set_phase(phase: Phase, *pairs: Any) -> None:
    for pair in pairs:
        if pair is not None:
            pair.phase = phase


def run_demo(*, new_kind: str = "postgres", workdir: Path, conversations: int = 12, out: TextIO = sys.stdout) -> int:
    n = Narrator(out)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    print(f"dualsaver demo: moving a support agent's memory from SQLite to {new_kind}", file=out)
    n.say(f"work dir: {workdir} (reports and data stay here)")
    n.say(f"old: SQLite at {workdir / 'old.sqlite'} (checkpoints) and {workdir / 'old-store.sqlite'} (long-term store)")
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(open_saver(f"sqlite:///{workdir / 'old.sqlite'}"))
        new, new_store_url = stack.enter_context(_new_store(new_kind, workdir, n))
        old_store, new_store = stack.enter_context(_long_term_stores(workdir, new_store_url))
        if new_store is None:
            n.say("dualsaver's Redis layout holds checkpoints only: the long-term store stays on SQLite")
        code = _migrate(n, workdir, conversations, new_kind, (old, new), (old_store, new_store))
    return code


def _migrate(n: Narrator, workdir: Path, conversations: int, new_kind: str, savers: tuple[Any, Any],
             stores: tuple[Any, Any]) -> int:
    (old, new), (old_store, new_store) = savers, stores
    half = conversations // 2

    n.step("before: the agent runs on SQLite alone")
    turns = _talk(build_support_agent(old, old_store), range(half), 3)
    n.say(f"{turns} turns in {half} conversations; old holds {_checkpoints(old)} checkpoints"
          f" and {_items(old_store)} memories")

    saver = DualSaver(old, new, Phase.SHADOW_WRITE, journal=workdir / "journal.sqlite")
    # the store follows the saver's phase: one phase for both halves of the memory
    store = None if new_store is None else DualStore(old_store, new_store, saver.phase_source,
                                                     journal=workdir / "store-journal.sqlite")
    app = build_support_agent(saver, store or old_store)
    n.step("phase shadow-write: every write goes to old first, then a copy to new (in the background)")
    turns = _talk(app, range(half - 2, conversations), 2, offset=3)
    saver.flush(timeout=60)  # new's copies are written behind the agent's back: let them land
    n.say(f"{turns} more turns; old: {len(_threads(old))} threads, new: {len(_threads(new))} threads")
    if store is not None:
        store.flush(timeout=60)
        n.say(f"memories: old {_items(old_store)}, new {_items(new_store)}")
    n.say("new has only what it saw live; the history before the switch is still missing")

    n.step("phase backfill: copying history old -> new while the agent keeps talking")
    _set_phase(Phase.BACKFILL, saver, store)
    result = backfill(old, new, state_path=workdir / "backfill-state.sqlite")
    n.say(result.summary().replace("\n", "\n   "))
    if store is not None:
        copied = backfill_items(old_store, new_store, state_path=workdir / "store-backfill-state.sqlite")
        n.say(copied.summary().replace("\n", "\n   "))
    _talk(app, range(2), 1, offset=4)

    if not _check_and_repair(n, workdir, old, new, stores):
        return 1

    n.step("phase read-switch: reads come from new; old still gets every write for rollback")
    _set_phase(Phase.READ_SWITCH, saver, store)
    state = say(app, "customer-000", "Is my refund done?")
    n.say(f"customer-000 now has {len(state['messages'])} messages, read back from new")
    n.say(f"old and new both hold {_checkpoints(old)} / {_checkpoints(new)} checkpoints")
    if store is not None:
        profile = store.get(("customers", "customer-000"), "profile")
        n.say(f"its memory, read from new: {profile.value['turns'] if profile else '?'} turns remembered")

    n.step("phase decommission: old is no longer touched")
    _set_phase(Phase.DECOMMISSION, saver, store)
    before = _checkpoints(old)
    _talk(app, range(conversations), 1, offset=1)
    n.say(f"{conversations} more turns; old unchanged at {before} checkpoints, new at {_checkpoints(new)}")
    failures = saver.secondary_failures.total() + (0 if store is None else store.secondary_failures.total())
    n.say(f"secondary failures during the migration: {failures}")
    saver.close()
    if store is not None:
        store.close()
    memory = "every conversation and memory" if store is not None else "every conversation"
    n.step(f"done in {time.perf_counter() - n.started:.1f}s: {memory} now lives in {new_kind}")
    return 0


def _check_and_repair(n: Narrator, workdir: Path, old: Any, new: Any, stores: tuple[Any, Any]) -> bool:
    """The check before read-switch, an incident planted and repaired; True when clean."""
    n.step("check: diffing both stores before anyone switches reads")
    report = check(old, new)
    paths = {"json_path": workdir / "report.json", "html_path": workdir / "report.html",
             "markdown_path": workdir / "report.md"}
    write_reports(report, **paths)
    n.say(f"safe to switch reads: {'yes' if report.clean else 'no'}"
          f" ({report.summary['threads_compared']} threads,"
          f" {report.summary['checkpoints_compared']} checkpoints compared)")
    if stores[1] is not None:
        items = check_items(*stores)
        write_reports(items, json_path=workdir / "store-report.json", markdown_path=workdir / "store-report.md")
        n.say(f"long-term store: {'clean' if items.clean else 'DIVERGENT'}"
              f" ({len(items.divergences)} divergence(s); report: {workdir / 'store-report.md'})")
        if not items.clean:
            n.say("the store check is not clean: stopping before read-switch")
            return False
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
    return report.clean
