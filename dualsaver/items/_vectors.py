"""What happens to an item's vectors on the way to the target: copied as they are when both
stores index the same fields with the same dimensions, computed again through the target's
own index configuration when they do not (an embedding call: the result says so), dropped
when the target has no index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dualsaver.items.record import StoredItem, vectors_pass
from dualsaver.sansio import Call, Plan

COPIED, RECOMPUTED, NONE = "copied", "recomputed", "none"


def vector_mode(source: Any, target: Any) -> str:
    if target.index is None:
        return NONE
    return COPIED if vectors_pass(source.index, target.index) else RECOMPUTED


class Embedder:
    """The target store's embeddings, as a plan target ("embed")."""

    def __init__(self, store: Any) -> None:
        self.embeddings: Any = getattr(store, "embeddings", None)
        config = getattr(store, "index_config", None) or {}
        self.fields = config.get("__tokenized_fields") or []

    def documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.embeddings.embed_documents(texts)]

    async def adocuments(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in await self.embeddings.aembed_documents(texts)]


def texts_of(value: dict[str, Any], fields: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(field name, text) pairs to embed, named as the official stores name them."""
    from langgraph.store.base import get_text_at_path

    found = []
    for path, tokens in fields:
        texts = get_text_at_path(value, tokens)
        found += [(f"{path}.{i}" if len(texts) > 1 else path, text) for i, text in enumerate(texts)]
    return found


def with_vectors(items: list[StoredItem], mode: str,
                 fields: Sequence[tuple[str, Any]]) -> Plan[tuple[list[StoredItem], int]]:
    """The items as the target gets them, and how many vectors were computed again."""
    if mode == COPIED:
        return items, 0
    if mode == NONE:
        return [replace(i, vectors=None) if i.vectors else i for i in items], 0
    wanted = [(n, name, text) for n, i in enumerate(items) for name, text in texts_of(i.value, fields)]
    if not wanted:
        return [replace(i, vectors=None) for i in items], 0
    vectors = yield Call("embed", "documents", ([text for _, _, text in wanted],))
    per_item: dict[int, dict[str, list[float]]] = {}
    for (n, name, _), vector in zip(wanted, vectors):
        per_item.setdefault(n, {})[name] = vector
    return [replace(i, vectors=per_item.get(n)) for n, i in enumerate(items)], len(wanted)
