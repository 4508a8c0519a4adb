"""A thread the application deletes while the backfill copies it stays deleted.

In shadow-write DualSaver deletes a thread in old, then in new. A backfill batch read from
old before that delete and written to new after it would bring the thread back in new: a
conversation the user asked to forget, and a divergence that blocks read-switch. The
backfill (and a repair) asks the source about each thread it copied once the thread's rows
committed, and deletes from the target those the source no longer holds; so does read-switch's
lazy copy. Sync and async on real SQLite and PostgreSQL, through a real DualSaver; in processes
on real Redis; and every order of the two deletes around the copy, walked one by one."""

from __future__ import annotations

import pytest

from dualsaver import DualSaver, Phase, abackfill, acheck, backfill, check, repair
from dualsaver.stores import anative_for, aopen_saver, native_for, open_saver
from tests import check_support as cs

THREADS = ["t-a", "t-b", "t-c"]
DELETED = "t-b"


def _history(tmp_path) -> str:
    return cs.sqlite_history(tmp_path / "old.sqlite", THREADS)


def _held(saver) -> list[str]:
    return sorted(native_for(saver).thread_ids())


def _deleted_before_the_write(old, new, tmp_path, monkeypatch, phase: Phase = Phase.SHADOW_WRITE) -> None:
    """The application deletes DELETED through a real DualSaver (another replica, in `phase`)
    just before new's next write, which holds rows read from old before the delete. The caller
    waits for both stores, so new's delete lands before that write."""
    app = DualSaver(old, new, phase, write_behind=False, journal=str(tmp_path / "j.sqlite"))
    store = type(native_for(new))
    write = store.write_prepared

    def write_after_a_delete(self, statements):
        if DELETED in _held(old):
            app.delete_thread(DELETED)
        return write(self, statements)

    monkeypatch.setattr(store, "write_prepared", write_after_a_delete)


def _adeleted_before_the_write(old, new, tmp_path, monkeypatch, phase: Phase = Phase.SHADOW_WRITE) -> None:
    """`_deleted_before_the_write` over the async stores."""
    app = DualSaver(old, new, phase, write_behind=False, journal=str(tmp_path / "j.sqlite"))
    store = type(anative_for(new))
    write = store.awrite_prepared

    async def write_after_a_delete(self, statements):
        if await anative_for(old).acheckpoint_keys(DELETED):
            await app.adelete_thread(DELETED)
        return await write(self, statements)

    monkeypatch.setattr(store, "awrite_prepared", write_after_a_delete)


def test_a_thread_deleted_during_the_copy_is_not_brought_back(tmp_path, pg_url, monkeypatch):
    old_url = _history(tmp_path)
    with open_saver(old_url) as old, open_saver(pg_url) as new:
        _deleted_before_the_write(old, new, tmp_path, monkeypatch)
        result = backfill(old, new, state_path=tmp_path / "progress.sqlite")
        monkeypatch.undo()

        assert _held(old) == _held(new) == ["t-a", "t-c"]
        assert result.deleted == 1 and result.failed == 0
        assert any("deleted from the source while this run copied them" in n for n in result.notes), result.notes
        assert check(old, new).clean


async def test_the_async_backfill_does_the_same(tmp_path, pg_url, monkeypatch):
    old_url = _history(tmp_path)
    async with aopen_saver(old_url) as old, aopen_saver(pg_url) as new:
        _adeleted_before_the_write(old, new, tmp_path, monkeypatch)
        result = await abackfill(old, new, state_path=tmp_path / "progress.sqlite")
        monkeypatch.undo()

        assert not await anative_for(new).acheckpoint_keys(DELETED)
        assert (await acheck(old, new)).clean
        assert result.deleted == 1


class _DeleteInSource:
    """A progress display that, when the thread's copy has committed, deletes the thread from
    the source only: new's delete ran before the copy wrote it, old's lands now."""

    def __init__(self, old_url: str) -> None:
        self.old_url = old_url
        self.deleted = False

    def start(self, total, already_done) -> None:
        pass

    def advance(self, thread_id, status, checkpoints, writes) -> None:
        if thread_id == DELETED:
            with open_saver(self.old_url) as old:
                old.delete_thread(DELETED)
            self.deleted = True


def test_a_backfill_in_processes_does_the_same(tmp_path, redis_url):
    old_url = _history(tmp_path)
    result = backfill(old_url, redis_url, processes=2, state_path=tmp_path / "progress.sqlite",
                      progress=_DeleteInSource(old_url))
    with open_saver(old_url) as old, open_saver(redis_url) as new:
        assert _held(old) == _held(new) == ["t-a", "t-c"]
        assert check(old, new).clean
    assert result.deleted == 1


def test_a_dry_run_and_a_copy_of_threads_still_held_delete_nothing(tmp_path, pg_url):
    old_url = _history(tmp_path)
    with open_saver(old_url) as old, open_saver(pg_url) as new:
        assert backfill(old, new, dry_run=True, state_path=tmp_path / "progress.sqlite").deleted == 0
        result = backfill(old, new, state_path=tmp_path / "progress.sqlite")
        assert (result.deleted, result.threads) == (0, len(THREADS))
        assert _held(new) == THREADS


@pytest.mark.parametrize("source", ["pg_url", "redis_url"])
def test_any_source_is_asked(tmp_path, source, request):
    """PostgreSQL answers for many threads in one query, dualsaver's Redis saver a thread at a time."""
    old_url = request.getfixturevalue(source)
    with open_saver(old_url) as old:
        cs.populate(old, THREADS)
    new_url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    hook = _DeleteInSource(old_url)
    with open_saver(old_url) as old, open_saver(new_url) as new:
        result = backfill(old, new, state_path=tmp_path / "progress.sqlite", progress=hook)
        assert hook.deleted
        assert _held(old) == _held(new) == ["t-a", "t-c"]
        assert check(old, new).clean
    assert result.deleted == 1


def test_a_repair_does_not_bring_back_a_thread_deleted_while_it_copied_it(tmp_path, pg_url, monkeypatch):
    old_url = _history(tmp_path)
    with open_saver(old_url) as old, open_saver(pg_url) as new:
        _deleted_before_the_write(old, new, tmp_path, monkeypatch)
        result = repair(old, new, [DELETED])  # its rows are read, then the application deletes it
        monkeypatch.undo()

        assert DELETED not in _held(new) and DELETED not in _held(old)
        assert check(old, new, thread_ids=[DELETED]).clean
        assert result.ok and any(DELETED in note and "deleted in the target too" in note for note in result.notes)


# Where the application's delete of old and of new may fall in the backfill of the thread:
# before it is read, between its read and its write, between the write and the question to the
# source, between the question and the backfill's delete, after the backfill.
MOMENTS = ["before the read", "before the write", "before the question", "after the question", "after"]


@pytest.mark.parametrize(("old_at", "new_at"), [
    (o, n) for i, o in enumerate(MOMENTS) for n in MOMENTS[i:]  # old's delete comes first
])
def test_every_order_of_the_two_deletes_ends_with_the_thread_deleted(tmp_path, monkeypatch, old_at, new_at):
    """The argument of `deleted_meanwhile`, walked case by case on real SQLite stores."""
    old_url, new_url = _history(tmp_path), f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(old_url) as old, open_saver(new_url) as new:
        store = type(native_for(new))
        write, asked = store.write_prepared, store.threads_held

        def happen(moment: str) -> None:  # the application's deletes due at this moment, old's first
            for saver, at in ((old, old_at), (new, new_at)):
                if at == moment and DELETED in _held(saver):
                    saver.delete_thread(DELETED)

        def write_between(self, statements):
            happen("before the write")
            try:
                return write(self, statements)
            finally:
                happen("before the question")

        def ask_then(self, thread_ids):
            try:
                return asked(self, thread_ids)
            finally:
                happen("after the question")

        happen("before the read")
        monkeypatch.setattr(store, "write_prepared", write_between)
        monkeypatch.setattr(store, "threads_held", ask_then)
        backfill(old, new, state_path=tmp_path / "progress.sqlite")
        monkeypatch.undo()
        happen("after")
        assert _held(old) == _held(new) == ["t-a", "t-c"]
        assert check(old, new).clean


def test_a_thread_deleted_during_read_switchs_lazy_copy_is_not_brought_back(tmp_path, pg_url, monkeypatch):
    """In read-switch a read that new misses is answered from old, and the thread is copied
    into new. Another replica deleting the thread meanwhile (new, then old) left the copy in
    new: the conversation came back there, where reads now go. The lazy copy asks old again
    once its rows committed."""
    old_url = _history(tmp_path)
    with open_saver(old_url) as old, open_saver(pg_url) as new:
        reader = DualSaver(old, new, Phase.READ_SWITCH, journal=str(tmp_path / "reader.sqlite"))
        _deleted_before_the_write(old, new, tmp_path, monkeypatch, Phase.READ_SWITCH)
        config = {"configurable": {"thread_id": DELETED, "checkpoint_ns": ""}}
        assert reader.get_tuple(config) is not None  # answered from old, before the delete
        monkeypatch.undo()

        assert DELETED not in _held(old) and DELETED not in _held(new)
        assert reader.get_tuple(config) is None  # not back in new, where reads go
        assert reader.secondary_failures.total() == 0
        reader.close()


async def test_the_async_lazy_copy_does_the_same(tmp_path, pg_url, monkeypatch):
    old_url = _history(tmp_path)
    async with aopen_saver(old_url) as old, aopen_saver(pg_url) as new:
        reader = DualSaver(old, new, Phase.READ_SWITCH, journal=str(tmp_path / "reader.sqlite"))
        _adeleted_before_the_write(old, new, tmp_path, monkeypatch, Phase.READ_SWITCH)
        config = {"configurable": {"thread_id": DELETED, "checkpoint_ns": ""}}
        assert await reader.aget_tuple(config) is not None
        monkeypatch.undo()

        assert not await anative_for(new).acheckpoint_keys(DELETED)
        assert await reader.aget_tuple(config) is None
        await reader.aclose()
