"""PostgreSQL's item adapter: a batch's vectors travel as one binary `vector[]` / `halfvec[]`
array and land as pgvector holds them (searchable by the official store); the adapter's reads on
the store's own connection leave the official store's pipelined queries working."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dualsaver.items import backfill_items, check_items, items_for, open_item_store
from dualsaver.items.record import StoredItem
from tests.items_support import DIMS, INDEX, embed

WORDS = ["apple river", "stone cloud", "tiger piano", "lemon orbit", "candle forest"]


def planted(n: int) -> list[StoredItem]:
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    return [StoredItem(("docs", f"d{i % 2}"), f"k{i:02d}", {"text": WORDS[i % len(WORDS)] + f" {i}", "i": i},
                       at + timedelta(minutes=i), at + timedelta(minutes=i, seconds=30),
                       vectors={"text": embed([WORDS[i % len(WORDS)] + f" {i}"])[0]} if i % 3 else None)
            for i in range(n)]


@pytest.mark.parametrize("kind, rel", [("vector", 1e-6), ("halfvec", 2e-3)])
def test_vectors_go_binary_and_come_back_as_written(kind, rel, pg_url_factory):
    index = {**INDEX, "ann_index_config": {"vector_type": kind}}
    with open_item_store("memory://", index=INDEX) as source, open_item_store(pg_url_factory(), index=index) as pg:
        items_for(source).write_items(planted(25))
        result = backfill_items(source, pg, state_path=":memory:", batch=7)  # several batches, some without vectors
        assert (result.items, result.bad, result.vectors) == (25, 0, "copied")
        back = {i.ident: i for i in items_for(pg).items()}
        for item in planted(25):
            copy = back[item.ident]
            assert (copy.value, copy.created_at, copy.updated_at) == (item.value, item.created_at, item.updated_at)
            if item.vectors is None:
                assert copy.vectors is None
            else:
                assert copy.vectors is not None and len(copy.vectors["text"]) == DIMS
                assert copy.vectors["text"] == pytest.approx(item.vectors["text"], rel=rel, abs=1e-3)
        (best,) = pg.search(("docs",), query=WORDS[1] + " 1", limit=1)  # the official store searches them
        assert best.key == "k01"
        report = check_items(source, pg)  # halfvec's float16 is compared at its own precision
        assert report.clean, [d.to_dict() for d in report.divergences]


def test_the_official_store_still_answers_after_the_adapter_read_its_connection(pg_url):
    with open_item_store(pg_url, index=INDEX) as pg:
        pg.put(("docs",), "a", {"text": "apple"})
        assert pg.get(("docs",), "a") is not None  # a pipelined query before the adapter's read ...
        assert set(items_for(pg).get_items([(("docs",), "a")])) == {(("docs",), "a")}
        assert [i.key for i in items_for(pg).items()] == ["a"]
        assert pg.get(("docs",), "a").value == {"text": "apple"}  # ... and after it
        assert [i.key for i in pg.search(("docs",))] == ["a"]
