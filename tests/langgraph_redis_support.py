"""Helpers for the official-Redis-saver tests: independent raw snapshots of a server, and
views of a store's history that compare by meaning.

`raw_keys` reads every key with plain redis-py (SCAN, then JSON.GET / ZRANGE / GET by type),
without dualsaver, so tests can judge what dualsaver's writer stored against what the
official saver stored for the same calls.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from dualsaver.checker.canonical import canonical
from dualsaver.stores import StoredCheckpoint, native_for

Key = tuple[str, str, str]


def plain_client(url: str) -> redis.Redis:
    """A redis-py client for a ``redis+langgraph://`` (or ``redis://``) URL."""
    scheme, rest = url.split("://", 1)
    base = "rediss" if scheme.startswith("rediss") else "redis"
    return redis.Redis.from_url(f"{base}://{rest.split('?')[0]}", protocol=2)


def raw_keys(url: str) -> dict[str, Any]:
    """key -> value for every key of the server: JSON documents as dicts, zsets as
    [(member, score)], strings as text."""
    with plain_client(url) as client:
        out: dict[str, Any] = {}
        for raw in client.scan_iter(count=1000):
            key = raw.decode()
            kind = client.type(key).decode()
            if kind == "ReJSON-RL":
                out[key] = json.loads(client.execute_command("JSON.GET", key, "$"))[0]
            elif kind == "zset":
                out[key] = [(m.decode(), s) for m, s in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "string":
                out[key] = client.get(key).decode()
            else:
                out[key] = kind
        return out


def history(saver: Any) -> dict[Key, tuple]:
    """Every checkpoint the store holds, read natively, in canonical form: (checkpoint,
    metadata, parent, [(task_id, task_path, idx, channel, value)]) by (thread, ns, id)."""
    store = native_for(saver)
    out: dict[Key, tuple] = {}
    for thread_id in store.thread_ids():
        for item in store.read_thread(thread_id):
            assert isinstance(item, StoredCheckpoint), item
            out[item.key] = canonical_item(item)
    return out


def canonical_item(item: StoredCheckpoint) -> tuple:
    writes = [(w.task_id, w.task_path, w.idx, w.channel, canonical(w.value)) for w in item.writes]
    return (canonical(dict(item.checkpoint)), canonical(dict(item.metadata)), item.parent_checkpoint_id, writes)


def public_history(saver: Any, thread_ids: list[str]) -> dict[Key, tuple]:
    """What an application sees (list, confirmed by get_tuple) in canonical form; pending
    writes as a sorted list, since savers order them differently."""
    out: dict[Key, tuple] = {}
    for thread_id in thread_ids:
        for tup in list(saver.list({"configurable": {"thread_id": thread_id}})):  # SqliteSaver locks while listing
            conf = tup.config["configurable"]
            if conf["thread_id"] != thread_id:
                continue  # the official saver's tag search ignores case
            again = saver.get_tuple(tup.config)
            assert again is not None
            cp = {k: v for k, v in again.checkpoint.items() if k not in ("type", "pending_sends")}
            parent = (again.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            writes = sorted(json.dumps(canonical(list(w)), sort_keys=True) for w in again.pending_writes or ())
            out[(thread_id, conf["checkpoint_ns"], conf["checkpoint_id"])] = (
                canonical(cp), canonical(dict(again.metadata)), parent, writes
            )
    return out
