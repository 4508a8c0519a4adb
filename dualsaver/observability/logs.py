"""structlog configuration, done once at the edge of the program (the CLI, or an application).

    from dualsaver.observability.logs import configure_logging
    configure_logging()            # JSON lines on stderr (a console layout on a TTY)

Every line goes through `redact_secrets`: a password in anything that looks like a URL or a
DSN (`password=...`), and the value of any key named like password/secret/token, is replaced
by ``***``, in nested values and formatted tracebacks too. Standard-library log records
(psycopg, redis-py, ...) go through the same processors, so nothing escapes the redaction.

The library's own log calls already carry `thread_id` and `phase`; nothing is bound here.
Environment: `DUALSAVER_LOG_FORMAT` (json | console), `DUALSAVER_LOG_LEVEL` (default info),
`DUALSAVER_LOG_FILE` (also append JSON lines to this file). The info lines of chatty
third-party libraries (`CHATTY_LOGGERS`: the official Redis saver, RedisVL) show at debug only.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from dualsaver.errors import describe_error
from dualsaver.redact import MASK, redact_text

_SECRET_KEY = re.compile(
    r"(?i)(password|passwd|^pass$|^pwd$|secret|token|api[_-]?key|credential|authorization)"
)
_HANDLER_MARK = "_dualsaver_handler"
# Libraries that log routine events at info ("Index already exists", which client they
# chose): below warning they reach the log only at debug, so a command's stderr stays its own.
CHATTY_LOGGERS = ("langgraph.checkpoint.redis", "langgraph.store.redis", "redisvl", "[RedisVL]", "RedisVL")


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_value(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with every secret masked (nested mappings and sequences too)."""
    if depth > 20:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") else redact_value(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redact_value(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, BaseException):
        return describe_error(value)
    return redact_text(str(value))


def redact_secrets(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: mask every secret in the event (run after format_exc_info)."""
    return redact_value(event_dict)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )


def configure_logging(
    *,
    fmt: str | None = None,
    level: str | int | None = None,
    stream: TextIO | None = None,
    log_file: str | os.PathLike[str] | None = None,
) -> None:
    """Send structlog and standard-library logs, redacted, to `stream` (default stderr).

    `fmt` is "json" or "console" (default: $DUALSAVER_LOG_FORMAT, else console on a TTY and
    JSON otherwise). Calling it again replaces the handlers it added before.
    """
    stream = stream if stream is not None else sys.stderr
    fmt = fmt or os.environ.get("DUALSAVER_LOG_FORMAT") or (
        "console" if getattr(stream, "isatty", lambda: False)() else "json"
    )
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be json or console, not {fmt!r}")
    level = level or os.environ.get("DUALSAVER_LOG_LEVEL") or "info"
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    log_file = log_file or os.environ.get("DUALSAVER_LOG_FILE") or None

    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    json_renderer = structlog.processors.JSONRenderer(sort_keys=True, default=str)
    renderer = json_renderer if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    handlers[0].setFormatter(_formatter(renderer))
    if log_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(_formatter(json_renderer))
        handlers.append(file_handler)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
