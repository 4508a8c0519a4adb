"""The item store of the official `RedisStore` / `AsyncRedisStore` (langgraph-checkpoint-redis):
one RedisJSON document per item at ``store:<ULID>`` (the namespace text escaped for
RediSearch, times in microseconds), its vector in ``store_vectors:<same ULID>``, the TTL as
the keys' own expiry (PEXPIRETIME, milliseconds).

What the official layout cannot hold, and so cannot be copied in exactly: more than one
vector per item (one vector document per item id), and the TTL's minutes (its writer drops
them; this adapter keeps them in the document, where it reads them back).

Redis has no order: the reader lists the keys and heads of every item, sorts them, then
reads the documents a page at a time (memory: one (namespace, key, id) triple per item)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from dualsaver.errors import describe_error
from dualsaver.items.record import (
    BadItem, IndexInfo, ItemKey, Namespace, StoredItem, from_micros, holdable, ns_text, ns_tuple, to_micros,
)
from dualsaver.items._shells import AsyncItemShell, ItemPlans, SyncItemShell
from dualsaver.sansio import AsyncTargets, Call, Emit, Plan, Targets

PAGE = 500
SEP = ":"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _json(raw: Any) -> Any:
    raw = _text(raw)
    if raw is None:
        return None
    found = json.loads(raw) if isinstance(raw, str) else raw
    return found[0] if isinstance(found, list) and found else (None if found == [] else found)


class RedisItemPlans(ItemPlans):
    exact = True
    holds_ttl = True
    store: Any
    index: IndexInfo | None

    def __init__(self, store: Any) -> None:
        from langgraph.store.redis.token_unescaper import TokenUnescaper
        from redisvl.utils.token_escaper import TokenEscaper

        self.store = store
        self.index = IndexInfo.of(getattr(store, "index_config", None))
        self.prefix = store.store_prefix + SEP
        self.vector_prefix = store.vector_prefix + SEP
        self._escape = TokenEscaper().escape
        self._unescape = TokenUnescaper().unescape

    def _vector_key(self, key: str) -> str:
        return self.vector_prefix + key.split(SEP, 1)[1]

    def _heads_plan(self, prefix: Namespace) -> Plan[list[tuple[str, str, str]]]:
        keys = yield Call("db", "scan", (self.prefix + "*",))
        index = []
        for start in range(0, len(keys), PAGE):
            chunk = keys[start : start + PAGE]
            heads = yield Call("db", "heads", (chunk,))
            for key, (ns, item_key) in zip(chunk, heads):
                if ns is None or item_key is None:
                    continue  # gone since the scan
                namespace = ns_tuple(self._unescape(ns))
                if namespace[: len(prefix)] == prefix:
                    index.append((ns_text(namespace), item_key, key))
        index.sort()
        return index

    def _items_plan(self, prefix: Namespace = ()) -> Plan[None]:
        index = yield from self._heads_plan(prefix)
        for start in range(0, len(index), PAGE):
            chunk = index[start : start + PAGE]
            found = yield from self._read_plan([key for _, _, key in chunk])
            yield Emit([item for item in found if item is not None])

    def _read_plan(self, keys: list[str]) -> Plan[list[StoredItem | BadItem | None]]:
        docs, vectors, expiries = yield Call("db", "fetch", (keys, [self._vector_key(k) for k in keys]))
        return [self._decode(d, v, e) for d, v, e in zip(docs, vectors, expiries)]

    def _decode(self, doc: Any, vector: Any, expiry: Any) -> StoredItem | BadItem | None:
        doc = _json(doc)
        if doc is None:
            return None
        namespace = ns_tuple(self._unescape(doc["prefix"]))
        try:
            value = self.store._deserialize_value(doc["value"])
            if not isinstance(value, dict):
                raise ValueError(f"the value is a {type(value).__name__}, not a JSON object")
            vector = _json(vector)
            vectors = {vector["field_name"]: [float(x) for x in vector["embedding"]]} if vector else None
            expires = int(expiry) if expiry is not None else -1
            return StoredItem(
                namespace, doc["key"], value,
                from_micros(doc["created_at"]), from_micros(doc["updated_at"]),
                from_micros(expires * 1000) if expires > 0 else None,
                doc.get("ttl_minutes"), vectors,
            )
        except Exception as exc:
            return BadItem(namespace, str(doc.get("key")), describe_error(exc))

    def _find_plan(self, keys: Sequence[ItemKey]) -> Plan[dict[ItemKey, str]]:
        """The Redis key of each of these items the store holds."""
        found: dict[ItemKey, str] = {}
        wanted = {key for key in keys if holdable(key)}
        names = sorted({k for _, k in wanted})
        for start in range(0, len(names), 100):
            tags = "|".join(self._escape(k) for k in names[start : start + 100])
            hits = yield Call("db", "search", (self.store.store_prefix, f"@key:{{{tags}}}"))
            for key, ns, item_key in hits:
                ident = (ns_tuple(self._unescape(ns)), item_key)
                if ident in wanted:
                    found[ident] = key
        return found

    def _get_plan(self, keys: Sequence[ItemKey]) -> Plan[dict[ItemKey, StoredItem | BadItem]]:
        where = yield from self._find_plan(keys)
        read = yield from self._read_plan(list(where.values()))
        return {item.ident: item for item in read if item is not None}

    def _write_plan(self, items: Sequence[StoredItem], replace: bool) -> Plan[int]:
        from ulid import ULID

        if not items:
            return 0
        present = yield from self._find_plan([i.ident for i in items])
        if replace and present:
            yield Call("db", "delete", ([k for key in present.values() for k in (key, self._vector_key(key))],))
            present = {}
        writes = []
        for item in items:
            if item.ident in present:
                continue
            uid = str(ULID())
            writes.append((self.prefix + uid, self._doc(item), self.vector_prefix + uid, self._vector_doc(item),
                           round(item.expires_at.timestamp() * 1000) if item.expires_at is not None else None))
        if writes:
            replies = yield Call("db", "load", (writes,))
            failed = next((r for r in replies if isinstance(r, Exception)), None)
            if failed is not None:
                # Redis runs the rest of a MULTI when one command fails (a value RedisJSON
                # refuses): take back what the batch wrote, all of it under keys made just
                # now, so that no half-written item stays and a retry copies each item once
                yield Call("db", "delete", ([k for w in writes for k in (w[0], w[2])],))
                raise failed
        return len(writes)

    def _delete_plan(self, keys: Sequence[ItemKey]) -> Plan[None]:
        present = yield from self._find_plan(keys)
        if present:
            yield Call("db", "delete", ([k for key in present.values() for k in (key, self._vector_key(key))],))

    def _doc(self, item: StoredItem) -> dict[str, Any]:
        doc = {"prefix": self._escape(ns_text(item.namespace)), "key": item.key,
               "value": self.store._serialize_value(item.value), "created_at": to_micros(item.created_at),
               "updated_at": to_micros(item.updated_at)}
        if item.ttl_minutes is not None:
            doc["ttl_minutes"] = item.ttl_minutes
        if item.expires_at is not None:
            doc["expires_at"] = int(item.expires_at.timestamp())
        return doc

    def _vector_doc(self, item: StoredItem) -> dict[str, Any] | None:
        if not item.vectors or self.index is None:
            return None
        name, vector = next(iter(item.vectors.items()))  # the layout holds one vector per item
        return {"prefix": self._escape(ns_text(item.namespace)), "key": item.key, "field_name": name,
                "embedding": [float(x) for x in vector], "created_at": to_micros(item.created_at),
                "updated_at": to_micros(item.updated_at)}


def _hits(reply: Any) -> list[tuple[str, str, str]]:
    """FT.SEARCH ... RETURN 2 prefix key: (redis key, prefix, key) per document (one without
    both fields is not an item)."""
    docs: list[tuple[str, dict[str, Any]]] = []
    if isinstance(reply, dict):  # RESP3
        for doc in reply.get("results", []):
            attributes = doc.get("extra_attributes") or {}
            docs.append((_text(doc["id"]), {_text(k): _text(v) for k, v in attributes.items()}))
    else:
        for n in range(1, len(reply), 2):
            pairs = reply[n + 1]
            docs.append((_text(reply[n]), {_text(pairs[i]): _text(pairs[i + 1]) for i in range(0, len(pairs), 2)}))
    return [(key, fields["prefix"], fields["key"]) for key, fields in docs
            if fields.get("prefix") is not None and fields.get("key") is not None]


def _search_args(index: str, query: str) -> tuple[Any, ...]:
    return ("FT.SEARCH", index, query, "RETURN", "2", "prefix", "key", "LIMIT", "0", "10000", "DIALECT", "2")


def _load(pipe: Any, writes: Iterable[tuple[str, dict[str, Any], str, Any, int | None]]) -> None:
    for key, doc, vector_key, vector_doc, expires_ms in writes:
        pipe.execute_command("JSON.SET", key, "$", json.dumps(doc))
        if vector_doc is not None:
            pipe.execute_command("JSON.SET", vector_key, "$", json.dumps(vector_doc))
        if expires_ms is not None:
            pipe.execute_command("PEXPIREAT", key, expires_ms)
            if vector_doc is not None:
                pipe.execute_command("PEXPIREAT", vector_key, expires_ms)


def _fetch(pipe: Any, keys: list[str], vector_keys: list[str]) -> None:
    pipe.execute_command("JSON.MGET", *keys, "$")
    pipe.execute_command("JSON.MGET", *vector_keys, "$")
    for key in keys:
        pipe.execute_command("PEXPIRETIME", key)


def _fetched(replies: list[Any], count: int) -> tuple[list[Any], list[Any], list[Any]]:
    return list(replies[0]), list(replies[1]), list(replies[2 : 2 + count])


class RedisItems(RedisItemPlans, SyncItemShell):
    """Over a `RedisStore`: blocking commands, pipelines for reads and writes."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.redis = store._redis
        self._io = Targets(db=self)

    def scan(self, pattern: str) -> list[str]:
        return [_text(k) for k in self.redis.scan_iter(match=pattern, count=1000)]

    def heads(self, keys: list[str]) -> list[tuple[Any, Any]]:
        prefixes = self.redis.execute_command("JSON.MGET", *keys, "$.prefix")
        names = self.redis.execute_command("JSON.MGET", *keys, "$.key")
        return [(_json(p), _json(k)) for p, k in zip(prefixes, names)]

    def fetch(self, keys: list[str], vector_keys: list[str]) -> tuple[list[Any], list[Any], list[Any]]:
        if not keys:
            return [], [], []
        pipe = self.redis.pipeline(transaction=False)
        _fetch(pipe, keys, vector_keys)
        return _fetched(pipe.execute(), len(keys))

    def search(self, index: str, query: str) -> list[tuple[str, str, str]]:
        return _hits(self.redis.execute_command(*_search_args(index, query)))

    def load(self, writes: list[Any]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=True)
        _load(pipe, writes)
        return pipe.execute(raise_on_error=False)  # a command's error is a reply: see _write_plan

    def delete(self, keys: list[str]) -> None:
        self.redis.delete(*keys)


class AsyncRedisItems(RedisItemPlans, AsyncItemShell):
    """Over an `AsyncRedisStore`: the same plans, awaited."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.redis = store._redis
        self._io = AsyncTargets(db=self)

    async def ascan(self, pattern: str) -> list[str]:
        return [_text(k) async for k in self.redis.scan_iter(match=pattern, count=1000)]

    async def aheads(self, keys: list[str]) -> list[tuple[Any, Any]]:
        prefixes = await self.redis.execute_command("JSON.MGET", *keys, "$.prefix")
        names = await self.redis.execute_command("JSON.MGET", *keys, "$.key")
        return [(_json(p), _json(k)) for p, k in zip(prefixes, names)]

    async def afetch(self, keys: list[str], vector_keys: list[str]) -> tuple[list[Any], list[Any], list[Any]]:
        if not keys:
            return [], [], []
        pipe = self.redis.pipeline(transaction=False)
        _fetch(pipe, keys, vector_keys)
        return _fetched(await pipe.execute(), len(keys))

    async def asearch(self, index: str, query: str) -> list[tuple[str, str, str]]:
        return _hits(await self.redis.execute_command(*_search_args(index, query)))

    async def aload(self, writes: list[Any]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=True)
        _load(pipe, writes)
        return await pipe.execute(raise_on_error=False)  # a command's error is a reply: see _write_plan

    async def adelete(self, keys: list[str]) -> None:
        await self.redis.delete(*keys)
