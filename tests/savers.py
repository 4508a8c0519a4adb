"""Real savers for the tests, opened from the fixtures' servers and files."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

_files = itertools.count(1)


@contextlib.contextmanager
def sync_saver(kind: str, *, pg_url: str | None = None, tmp: Path | None = None) -> Iterator[BaseCheckpointSaver]:
    """A ready sync saver of `kind` (memory, sqlite, postgres) on fresh storage."""
    if kind == "memory":
        yield InMemorySaver()
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        assert tmp is not None
        with SqliteSaver.from_conn_string(str(tmp / f"s{next(_files)}.sqlite")) as saver:
            saver.setup()
            yield saver
    elif kind == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        assert pg_url is not None
        with PostgresSaver.from_conn_string(pg_url) as saver:
            saver.setup()
            yield saver
    else:
        raise ValueError(kind)


@contextlib.asynccontextmanager
async def async_saver(kind: str, *, pg_url: str | None = None, tmp: Path | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """A ready async saver of `kind` on fresh storage."""
    if kind == "memory":
        yield InMemorySaver()
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        assert tmp is not None
        async with AsyncSqliteSaver.from_conn_string(str(tmp / f"a{next(_files)}.sqlite")) as saver:
            await saver.setup()
            yield saver
    elif kind == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        assert pg_url is not None
        async with AsyncPostgresSaver.from_conn_string(pg_url) as saver:
            await saver.setup()
            yield saver
    else:
        raise ValueError(kind)


async def truncate_postgres(pg_url: str) -> None:
    """Empty the official saver's tables so one database serves many fresh savers."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(
            "DO $$ BEGIN IF to_regclass('checkpoints') IS NOT NULL THEN"
            " TRUNCATE checkpoints, checkpoint_blobs, checkpoint_writes; END IF; END $$"
        )


def _marker_put(saver: BaseCheckpointSaver, thread_id: str, marker: str) -> tuple:
    """The arguments of a put of one checkpoint whose only channel holds `marker`."""
    cp = empty_checkpoint()
    cp["channel_values"] = {"marker": marker}
    cp["channel_versions"] = {"marker": saver.get_next_version(None, None)}
    cfg = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return cfg, cp, {"source": "input", "step": -1}, cp["channel_versions"]


def put_marker(saver: BaseCheckpointSaver, thread_id: str, marker: str) -> str:
    """Put one checkpoint whose only channel holds `marker`; returns its id."""
    args = _marker_put(saver, thread_id, marker)
    saver.put(*args)
    return args[1]["id"]


async def aput_marker(saver: BaseCheckpointSaver, thread_id: str, marker: str) -> str:
    args = _marker_put(saver, thread_id, marker)
    await saver.aput(*args)
    return args[1]["id"]
