"""A memory the application deletes while the item backfill copies it stays deleted.

In shadow-write DualStore deletes an item in old, then in new. A batch read from old before
that delete and written to new after it would bring the item back in new. Once a batch is
written, the backfill asks the source which of its items it still holds and deletes the rest
from the target. A PostgreSQL source on one connection cannot be asked while it streams the
items (the stream holds that connection): the result says so instead of hanging. Read-switch's
lazy copy of an item new missed reads old again once it wrote. Real SQLite and PostgreSQL
stores, a real DualStore."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from langgraph.store.postgres import PostgresStore
from psycopg import Connection
from psycopg.rows import dict_row

from dualsaver import DualStore, Phase
from dualsaver.items import (
    abackfill_items, acheck_items, aopen_item_store, backfill_items, check_items, open_item_store,
)
from dualsaver.items._shells import AsyncItemShell, SyncItemShell

NS = ("users", "u1")
KEYS = [f"k{k}" for k in range(6)]
DELETED = "k2"
BATCH = 2  # several batches: the source is asked while it still streams


def _fill(store) -> None:
    for key in KEYS:
        store.put(NS, key, {"text": f"fact {key}"})


def _keys(store) -> list[str]:
    return sorted(item.key for item in store.search(NS, limit=100))


def _delete_when_written(monkeypatch, delete, into=None) -> None:
    """`delete()` runs just before a batch holding DELETED is written (into `into`, or any
    store): the batch was read from the source before the delete."""
    write = SyncItemShell.write_items

    def write_after_a_delete(self, items, *, replace=False):
        items = list(items)
        if (into is None or self.store is into) and DELETED in [item.key for item in items]:
            delete()
        return write(self, items, replace=replace)

    monkeypatch.setattr(SyncItemShell, "write_items", write_after_a_delete)


def _adelete_when_written(monkeypatch, adelete) -> None:
    """`_delete_when_written` for the async stores: `await adelete()` before the batch."""
    write = AsyncItemShell.awrite_items

    async def write_after_a_delete(self, items, *, replace=False):
        items = list(items)
        if DELETED in [item.key for item in items]:
            await adelete()
        return await write(self, items, replace=replace)

    monkeypatch.setattr(AsyncItemShell, "awrite_items", write_after_a_delete)


def test_an_item_deleted_during_the_copy_is_not_brought_back(tmp_path, pg_url, monkeypatch):
    with open_item_store(f"sqlite:///{tmp_path}/old.sqlite") as old, open_item_store(pg_url) as new:
        _fill(old)
        # the caller waits for both stores, so new's delete lands before the batch is written
        app = DualStore(old, new, Phase.SHADOW_WRITE, write_behind=False, journal=tmp_path / "j.sqlite")
        _delete_when_written(monkeypatch, lambda: app.delete(NS, DELETED))
        result = backfill_items(old, new, state_path=tmp_path / "progress.sqlite", batch=BATCH)
        monkeypatch.undo()

        assert _keys(new) == _keys(old) == [k for k in KEYS if k != DELETED]
        assert check_items(old, new).clean
        assert result.deleted == 1
        assert any("deleted from the source while this run copied them" in n for n in result.notes), result.notes
        app.close()


async def test_the_async_item_backfill_does_the_same(tmp_path, pg_url, monkeypatch):
    async with aopen_item_store(f"sqlite:///{tmp_path}/old.sqlite") as old, aopen_item_store(pg_url) as new:
        for key in KEYS:
            await old.aput(NS, key, {"text": f"fact {key}"})
        app = DualStore(old, new, Phase.SHADOW_WRITE, write_behind=False, journal=tmp_path / "j.sqlite")
        _adelete_when_written(monkeypatch, lambda: app.adelete(NS, DELETED))
        result = await abackfill_items(old, new, state_path=tmp_path / "progress.sqlite", batch=BATCH)
        monkeypatch.undo()

        assert await new.aget(NS, DELETED) is None
        assert (await acheck_items(old, new)).clean
        assert result.deleted == 1
        await app.aclose()


@contextmanager
def _one_connection(url: str):
    """The official PostgreSQL store over one connection, as an application may build it."""
    with Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        yield PostgresStore(conn)


@pytest.mark.parametrize("opened", ["from its URL", "on one connection"])
def test_a_postgresql_source_is_asked_when_it_has_a_connection_to_spare(tmp_path, pg_url, monkeypatch, opened):
    """A store opened from its URL (as the CLI opens it) keeps a small pool, so it is asked."""
    with open_item_store(pg_url) as made:  # the tables, and the history
        _fill(made)
    with open_item_store(pg_url) as pooled, _one_connection(pg_url) as single, \
            open_item_store(f"sqlite:///{tmp_path}/new.sqlite") as new:
        old = pooled if opened == "from its URL" else single
        # new's delete came first; old's lands as the batch is written
        _delete_when_written(monkeypatch, lambda: pooled.delete(NS, DELETED), into=new)
        result = backfill_items(old, new, state_path=tmp_path / "progress.sqlite", batch=BATCH)
        monkeypatch.undo()

        if opened == "from its URL":
            assert _keys(new) == _keys(old) == [k for k in KEYS if k != DELETED]
            assert result.deleted == 1 and check_items(old, new).clean
        else:  # asked, the source would wait for the connection its own stream holds
            assert DELETED in _keys(new) and DELETED not in _keys(old)
            assert result.deleted == 0 and any("was not asked" in n for n in result.notes), result.notes


def test_a_source_that_reads_items_whole_is_asked_the_same(tmp_path, monkeypatch):
    """A store with no key-only question (here the in-memory one) is asked by reading the items."""
    with open_item_store("memory://deleted-meanwhile") as old, \
            open_item_store(f"sqlite:///{tmp_path}/new.sqlite") as new:
        _fill(old)
        _delete_when_written(monkeypatch, lambda: old.delete(NS, DELETED))
        result = backfill_items(old, new, state_path=tmp_path / "progress.sqlite", batch=BATCH)
        monkeypatch.undo()
        assert _keys(new) == _keys(old) == [k for k in KEYS if k != DELETED]
        assert result.deleted == 1 and check_items(old, new).clean


@pytest.mark.parametrize("named_by", ["report", "journal"])
@pytest.mark.parametrize("live", ["put", "delete"])
def test_a_repair_does_not_undo_a_live_write_made_while_it_copied(tmp_path, pg_url, monkeypatch, live, named_by):
    """`repair_items` reads the source's row, then replaces the target's; a live write of the
    same key in between (DualStore: old, then new) was undone in the target by the older row,
    until the repair read the source again after writing: from a report first, and from the
    journal (`missed`: the target missed a put of the key) too since. A rollback after such a
    journal repair would have answered the older row."""
    from dualsaver.control.journal import JournalEntry, item_entry_fields
    from dualsaver.items import missed_from_journal, repair_items

    with open_item_store(f"sqlite:///{tmp_path}/old.sqlite") as old, open_item_store(pg_url) as new:
        _fill(old)
        app = DualStore(old, new, Phase.SHADOW_WRITE, write_behind=False, journal=tmp_path / "j.sqlite")
        read = SyncItemShell.get_items
        wrote: list[str] = []

        def read_then_a_live_write(self, keys):
            found = read(self, keys)
            if self.store is old and not wrote:  # the repair's read of the source
                wrote.append(live)
                if live == "put":
                    app.put(NS, DELETED, {"text": "fact k2, updated"})
                else:
                    app.delete(NS, DELETED)
            return found

        monkeypatch.setattr(SyncItemShell, "get_items", read_then_a_live_write)
        entry = JournalEntry(phase="shadow-write", store="new", operation="store.put",
                             task_id=None, error="ConnectionError", **item_entry_fields(NS, DELETED))
        missed = missed_from_journal([entry], "new") if named_by == "journal" else None
        result = repair_items(old, new, [(NS, DELETED)], missed=missed)
        monkeypatch.undo()
        app.close()

        assert wrote == [live]
        expected = {"text": "fact k2, updated"} if live == "put" else None
        assert [s.get(NS, DELETED) and s.get(NS, DELETED).value for s in (old, new)] == [expected, expected]
        assert result.bad == 0


def test_a_memory_deleted_during_read_switchs_lazy_copy_is_not_brought_back(tmp_path, pg_url, monkeypatch):
    """In read-switch a get that new misses is answered from old, and the item is copied into
    new. Another replica deleting it meanwhile (new, then old) left the copy in new, where
    reads now go. The lazy copy reads old again once it wrote (`settle`)."""
    with open_item_store(f"sqlite:///{tmp_path}/old.sqlite") as old, open_item_store(pg_url) as new:
        _fill(old)
        reader = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "reader.sqlite")
        other = DualStore(old, new, Phase.READ_SWITCH, write_behind=False, journal=tmp_path / "other.sqlite")
        _delete_when_written(monkeypatch, lambda: other.delete(NS, DELETED), into=new)
        assert reader.get(NS, DELETED) is not None  # answered from old, before the delete
        monkeypatch.undo()

        assert DELETED not in _keys(old) and DELETED not in _keys(new)
        assert reader.get(NS, DELETED) is None  # not back in new, where reads go
        reader.close()
        other.close()


async def test_the_async_lazy_copy_of_a_memory_does_the_same(tmp_path, pg_url, monkeypatch):
    async with aopen_item_store(f"sqlite:///{tmp_path}/old.sqlite") as old, aopen_item_store(pg_url) as new:
        for key in KEYS:
            await old.aput(NS, key, {"text": f"fact {key}"})
        reader = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "reader.sqlite")
        other = DualStore(old, new, Phase.READ_SWITCH, write_behind=False, journal=tmp_path / "other.sqlite")
        _adelete_when_written(monkeypatch, lambda: other.adelete(NS, DELETED))
        assert await reader.aget(NS, DELETED) is not None
        monkeypatch.undo()

        assert await new.aget(NS, DELETED) is None and await old.aget(NS, DELETED) is None
        assert await reader.aget(NS, DELETED) is None
        await reader.aclose()
        await other.aclose()
