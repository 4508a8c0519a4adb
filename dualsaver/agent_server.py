"""Factories for LangGraph Agent Server's langgraph.json (`checkpointer`, and room for `store`).

    "checkpointer": {"path": "dualsaver.agent_server.checkpointer"}

(langgraph-api splits the path at its last dot; the documented ``module:attr`` form is refused
by 0.16 with "Could not find checkpointer".) The server enters the factory once per worker at
start-up and leaves it at shutdown. Everything comes from the settings file
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
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from dualsaver.control import settings as settings_module
from dualsaver.errors import DualSaverError, ServerStartError, describe_error
from dualsaver.redact import redact, redact_text
from dualsaver.saver import DualSaver, TieredSaver
from dualsaver.stores import CAPABILITIES, aopen_saver

log = structlog.get_logger("dualsaver.agent_server")
POOL_SIZE = 8  # connections per PostgreSQL store and worker: the server runs runs side by side


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


def _offered(saver: Any) -> list[str]:
    """The async capabilities the server will find (it looks for the ``a`` methods)."""
    return [c for c in CAPABILITIES if "a" + c in type(saver).__dict__]


def _refused(exc: BaseException) -> ServerStartError:
    """One line, no password: what the server prints when start-up fails."""
    return ServerStartError(f"dualsaver checkpointer not started: {redact_text(describe_error(exc))}")


@asynccontextmanager
async def checkpointer() -> AsyncIterator[Any]:
    """The composite saver for LangGraph Agent Server (see the module docstring)."""
    async with AsyncExitStack() as stack:
        try:
            config = server_config()
            saver = _build(config, await _open_all(stack, config))
        except (DualSaverError, ValueError, OSError) as exc:
            error = _refused(exc)
            log.error("agent_server_checkpointer_failed", error=str(error))
            raise error from None
        phase = "tiered" if config.tiered else saver.phase.value
        origin = "settings" if config.tiered else getattr(saver.phase_source, "origin", "")
        log.info("agent_server_checkpointer", saver=repr(saver), phase=phase, phase_from=origin,
                 capabilities=_offered(saver), **config.describe())
        try:
            yield saver
        finally:
            await saver.aclose()  # write-behind drained within its bound; the rest journaled
