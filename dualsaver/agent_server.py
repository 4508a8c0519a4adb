"""Factories for LangGraph Agent Server's langgraph.json: the checkpointer and the long-term store.

    "checkpointer": {"path": "dualsaver.agent_server.checkpointer"},
    "store": {"path": "dualsaver.agent_server.store"}

(langgraph-api splits a module path at its last dot; the documented ``module:attr`` form is
refused by 0.16 with "Could not find checkpointer"; ``./file.py:attr`` loads too.) The server
enters the factory once per worker at start-up and leaves it at shutdown. Everything comes from the settings file
(`$DUALSAVER_SETTINGS`) and the environment, as for the CLI:

- a migration: `DualSaver(old, new)` over `[stores] old/new` (or `$DUALSAVER_OLD_URL` /
  `$DUALSAVER_NEW_URL`); its phase from `$DUALSAVER_PHASE`, `[migration] phase`, or the control
  store's phase record, polled (`dualsaver phase set` moves a running server, no redeploy);
  the journal goes to the control store when there is one;
- `[tiered] enabled = true`: `TieredSaver(durable, hot)` over `[tiered] durable/hot` (or
  `$DUALSAVER_DURABLE_URL` / `$DUALSAVER_HOT_URL`).

Each store is opened from its URL with a connection pool (`aopen_saver`); PostgreSQL's `setup()`
runs under an advisory lock, so workers starting together do not race on the migrations. One
log line says what was built (URLs redacted). On exit, write-behind is drained within its bound
and what could not land is journaled (`aclose`). A misconfiguration raises `ServerStartError`
with one line naming it (never a password), so the server fails to start instead of serving
half a migration.

`store` yields a `DualStore` over `[stores] store_old/store_new` (or `$DUALSAVER_STORE_OLD_URL` /
`$DUALSAVER_STORE_NEW_URL`), each opened with `[store.index]` (dims, fields, an ``embed`` given as
``python:module:function`` or LangGraph's provider string). It reads the phase from the
checkpointer's own phase source when a DualSaver checkpointer runs in the process (the server
enters the checkpointer first), so the two halves of the application's memory never disagree on
where reads come from; otherwise from the same sources as the checkpointer. The same journal and
control store; the same one log line, exit and failure as the checkpointer. (The server ignores
langgraph.json's own ``store.index`` for a custom store: the index is dualsaver's settings'.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from langgraph.store.base import BaseStore

from dualsaver.control import settings as settings_module
from dualsaver.errors import DualSaverError, ServerStartError, describe_error
from dualsaver.items import SyncStoreInThreads, aopen_item_store, index_config
from dualsaver.redact import redact, redact_text
from dualsaver.saver import DualSaver, DualStore, TieredSaver
from dualsaver.stores import CAPABILITIES, aopen_saver
from dualsaver.stores.urls import parse_store_url

log = structlog.get_logger("dualsaver.agent_server")
POOL_SIZE = 8  # connections per PostgreSQL store and worker: the server runs runs side by side
STORE_SETUP_LOCK = 0x64_75_61_6C_73_74_72  # the advisory lock key ("dualstr") serializing a store's setup()
LOCK_POLL = 0.1
CONNECT_TIMEOUT = 10  # seconds; an unreachable host fails start-up instead of hanging it
# The phase sources of the DualSaver checkpointers running in this process: the store
# factory reads its phase from the latest, so both halves of memory follow one phase.
_checkpointer_phases: list[Any] = []


@dataclass(frozen=True)
class ServerConfig:
    """What a factory builds from: the settings in force and the stores' URLs by role."""

    settings: Any
    tiered: bool
    urls: dict[str, str]  # "old"/"new", or "durable"/"hot"

    def describe(self) -> dict[str, str]:
        return {role: redact(url) for role, url in self.urls.items()}


def server_config(environ: Any = None) -> ServerConfig:
    """The settings file and the environment, checked: every URL a mode needs is named.
    Shared by the factories (the `store` one reads the same URLs)."""
    loaded = settings_module.current(environ=environ)
    if loaded.tiered:
        wanted = {"durable": loaded.durable_url, "hot": loaded.hot_url}
        where = {"durable": "[tiered] durable or $DUALSAVER_DURABLE_URL", "hot": "[tiered] hot or $DUALSAVER_HOT_URL"}
    else:
        wanted = {"old": loaded.old_url, "new": loaded.new_url}
        where = {"old": "[stores] old or $DUALSAVER_OLD_URL", "new": "[stores] new or $DUALSAVER_NEW_URL"}
    missing = [where[role] for role, url in wanted.items() if not url]
    if missing:
        raise ServerStartError(f"no store URL: set {' and '.join(missing)}")
    return ServerConfig(loaded, loaded.tiered, {role: str(url) for role, url in wanted.items()})


async def _open_all(stack: AsyncExitStack, config: ServerConfig) -> dict[str, Any]:
    return {
        role: await stack.enter_async_context(aopen_saver(url, pool_size=POOL_SIZE))
        for role, url in config.urls.items()
    }


def _build(config: ServerConfig, savers: dict[str, Any]) -> Any:
    if config.tiered:
        return TieredSaver.from_settings(savers["durable"], savers["hot"], config.settings.path)
    # the phase as the CLI finds it (environment, settings file, control store); a bad one
    # fails here, before any call
    return DualSaver(savers["old"], savers["new"], **config.settings.saver_kwargs())


def _open_journal(composite: Any) -> None:
    """Open the journal (its file, the control store's fleet journal) now, at start-up, not
    at the first miss in a request: the server refuses blocking calls on its event loop then,
    and a journal that cannot open fails start-up instead of a write."""
    _ = composite.recorder.journal


def _offered(saver: Any) -> list[str]:
    """The async capabilities the server will find (it looks for the ``a`` methods)."""
    return [c for c in CAPABILITIES if "a" + c in type(saver).__dict__]


def _refused(exc: BaseException, what: str = "checkpointer") -> ServerStartError:
    """One line, no password: what the server prints when start-up fails."""
    return ServerStartError(f"dualsaver {what} not started: {redact_text(describe_error(exc))}")


@asynccontextmanager
async def checkpointer() -> AsyncIterator[Any]:
    """The composite saver for LangGraph Agent Server (see the module docstring)."""
    async with AsyncExitStack() as stack:
        try:
            config = server_config()
            saver = _build(config, await _open_all(stack, config))
            _open_journal(saver)
        except (DualSaverError, ValueError, OSError) as exc:
            error = _refused(exc)
            log.error("agent_server_checkpointer_failed", error=str(error))
            raise error from None
        phase = "tiered" if config.tiered else saver.phase.value
        origin = "settings" if config.tiered else getattr(saver.phase_source, "origin", "")
        log.info("agent_server_checkpointer", saver=repr(saver), phase=phase, phase_from=origin,
                 capabilities=_offered(saver), **config.describe())
        shared = getattr(saver, "phase_source", None)
        if shared is not None:
            _checkpointer_phases.append(shared)
        try:
            yield saver
        finally:
            if shared is not None:
                _checkpointer_phases.remove(shared)
            await saver.aclose()  # write-behind drained within its bound; the rest journaled


@dataclass(frozen=True)
class StoreConfig:
    """What the store factory builds from: the settings in force, both stores' URLs, the index."""

    settings: Any
    urls: dict[str, str]  # "old"/"new"
    index: dict[str, Any] | None

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {role: redact(url) for role, url in self.urls.items()}
        if self.index:
            shown["index"] = {k: v for k, v in self.index.items() if k in ("dims", "fields", "embed", "distance_type")}
        return shown


def store_config(environ: Any = None) -> StoreConfig:
    """The settings file and the environment, checked: both long-term stores are named."""
    loaded = settings_module.current(environ=environ)
    wanted = {"old": loaded.store_old_url, "new": loaded.store_new_url}
    where = {"old": "[stores] store_old or $DUALSAVER_STORE_OLD_URL",
             "new": "[stores] store_new or $DUALSAVER_STORE_NEW_URL"}
    missing = [where[role] for role, url in wanted.items() if not url]
    if missing:
        raise ServerStartError(f"no long-term store URL: set {' and '.join(missing)}")
    return StoreConfig(loaded, {role: str(url) for role, url in wanted.items()}, loaded.store_index)


async def _locked(conn: Any) -> bool:
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (STORE_SETUP_LOCK,))).fetchone()
    return bool(row and row[0])


@asynccontextmanager
async def _setup_lock(url: str) -> AsyncIterator[None]:
    """Held while a PostgreSQL store runs its migrations, so workers starting together do not
    race on them. Polled, not waited for: the migrations CREATE INDEX CONCURRENTLY, which waits
    for every open transaction, and a session blocked in pg_advisory_lock is one."""
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        while not await _locked(conn):
            await asyncio.sleep(LOCK_POLL)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (STORE_SETUP_LOCK,))


async def _open_store(stack: AsyncExitStack, url: str, index: dict[str, Any] | None) -> BaseStore:
    """An async-capable store for `url`: PostgreSQL with a connection pool (the server runs runs
    side by side) and its setup under the lock; the others as `items.aopen_item_store` opens them."""
    if parse_store_url(url).kind == "postgres":
        from langgraph.store.postgres import AsyncPostgresStore
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        async with _setup_lock(url):
            pool: Any = AsyncConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=False, kwargs={
                "autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            stack.push_async_callback(pool.close)
            postgres = AsyncPostgresStore(pool, index=index_config(index))  # type: ignore[arg-type]
            await postgres.setup()
        return postgres
    store = await stack.enter_async_context(aopen_item_store(url, index=index))
    if type(store).__name__ == "SqliteStore":  # the sync one (AsyncSqliteStore has its abatch)
        return SyncStoreInThreads(store)
    return store


@asynccontextmanager
async def store() -> AsyncIterator[Any]:
    """The composite long-term store for LangGraph Agent Server (see the module docstring)."""
    async with AsyncExitStack() as stack:
        shared = _checkpointer_phases[-1] if _checkpointer_phases else None
        try:
            config = store_config()
            old, new = [await _open_store(stack, config.urls[role], config.index) for role in ("old", "new")]
            overrides = {} if shared is None else {"phase": shared}
            dual = DualStore.from_settings(old, new, config.settings.path, **overrides)
            _open_journal(dual)
        except Exception as exc:  # the server's boundary: whatever it is, one line and no start
            error = _refused(exc, "store")
            log.error("agent_server_store_failed", error=str(error))
            raise error from None
        log.info("agent_server_store", store=repr(dual), phase=dual.phase.value, phase_from=dual.phase_origin,
                 shares_checkpointer_phase=shared is not None, **config.describe())
        try:
            yield dual
        finally:
            await dual.aclose()  # write-behind drained within its bound; the rest journaled
