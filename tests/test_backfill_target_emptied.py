"""A backfill's progress is kept apart from the target, which may be emptied or replaced
between two runs: a Redis restarted without its data, a database made again. Resumed onto
such a target, the backfill copies every thread again instead of skipping the ones the saved
progress names (which would leave the target without them while reporting an exact copy),
and says so. A target that still holds its copy resumes as before, also when opened again
(the job is named by the Redis saver's address, or by the URLs given to a backfill in
processes, not by a per-process object id). Sync, async and in processes, on a real Redis
fed from a real SQLite file."""

from __future__ import annotations

import redis

from dualsaver import abackfill, acheck, backfill, check
from dualsaver.stores import aopen_saver, open_saver
from tests import check_support as cs

THREADS = ["t-a", "t-b", "t-c", "t-d"]
SET_ASIDE = "progress was set aside"


def _history(tmp_path) -> str:
    return cs.sqlite_history(tmp_path / "old.sqlite", THREADS)


def _empty(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()


def test_a_backfill_resumed_onto_an_emptied_target_copies_every_thread_again(tmp_path, redis_url, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the progress file
    old_url = _history(tmp_path)
    with open_saver(old_url) as old, open_saver(redis_url) as new:
        first = backfill(old, new)
    with open_saver(old_url) as old, open_saver(redis_url) as new:  # opened again: the same job
        kept = backfill(old, new)  # the target holds its copy: nothing is read again
        assert (kept.threads_resumed, kept.threads, kept.checkpoints) == (len(THREADS), 0, 0)
        assert not any(SET_ASIDE in note for note in kept.notes)

        _empty(redis_url)
        dry = backfill(old, new, dry_run=True)  # counts what it would copy, forgets nothing
        assert (dry.threads_resumed, dry.checkpoints) == (0, first.checkpoints)
        again = backfill(old, new)
        assert (again.threads_resumed, again.threads, again.checkpoints) == (0, len(THREADS), first.checkpoints)
        assert any(SET_ASIDE in note for note in again.notes), again.notes
        assert check(old, new).clean
        assert backfill(old, new).threads_resumed == len(THREADS)  # the new progress is trusted again


async def test_the_async_backfill_does_the_same(tmp_path, redis_url, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old_url = _history(tmp_path)
    async with aopen_saver(old_url) as old, aopen_saver(redis_url) as new:
        first = await abackfill(old, new)
        _empty(redis_url)
        again = await abackfill(old, new)
        assert (again.threads_resumed, again.checkpoints) == (0, first.checkpoints)
        assert any(SET_ASIDE in note for note in again.notes), again.notes
        assert (await acheck(old, new)).clean


def test_a_backfill_in_processes_does_the_same(tmp_path, redis_url):
    old_url, state = _history(tmp_path), tmp_path / "progress.sqlite"
    first = backfill(old_url, redis_url, processes=2, state_path=state)
    kept = backfill(old_url, redis_url, processes=2, state_path=state)  # named by its URLs: the same job
    assert (kept.threads_resumed, kept.checkpoints) == (len(THREADS), 0)
    _empty(redis_url)
    again = backfill(old_url, redis_url, processes=2, state_path=state)
    assert (again.threads_resumed, again.checkpoints) == (0, first.checkpoints)
    assert any(SET_ASIDE in note for note in again.notes), again.notes
    with open_saver(old_url) as old, open_saver(redis_url) as new:
        assert check(old, new).clean


def test_an_item_backfill_resumed_onto_a_new_empty_target_copies_every_namespace_again(tmp_path, monkeypatch):
    """The long-term store's items: the target's file replaced by an empty one (a new volume)."""
    from dualsaver.items import backfill_items, check_items, open_item_store

    monkeypatch.chdir(tmp_path)  # the progress file
    old_url, new_path = f"sqlite:///{tmp_path / 'items-old.sqlite'}", tmp_path / "items-new.sqlite"
    with open_item_store(old_url) as old:
        for i in range(5):
            old.put(("users", f"u{i}"), "prefs", {"n": i})
    with open_item_store(old_url) as old, open_item_store(f"sqlite:///{new_path}") as new:
        assert backfill_items(old, new).items == 5
    with open_item_store(old_url) as old, open_item_store(f"sqlite:///{new_path}") as new:
        kept = backfill_items(old, new)
        assert (kept.items, kept.namespaces_resumed) == (0, 5)
    new_path.unlink()
    with open_item_store(old_url) as old, open_item_store(f"sqlite:///{new_path}") as new:
        again = backfill_items(old, new)
        assert (again.items, again.namespaces_resumed) == (5, 0)
        assert any(SET_ASIDE in note for note in again.notes), again.notes
        assert check_items(old, new).clean


def test_a_backfill_into_a_redis_cluster_opened_again_resumes(tmp_path, redis_cluster_url, monkeypatch):
    """A cluster's saver is named by its nodes, not by the object: opened again, the job resumes."""
    monkeypatch.chdir(tmp_path)
    old_url = _history(tmp_path)
    with open_saver(old_url) as old, open_saver(redis_cluster_url) as new:
        first = backfill(old, new)
    with open_saver(old_url) as old, open_saver(redis_cluster_url) as new:
        again = backfill(old, new)
        assert (again.threads_resumed, again.threads, again.checkpoints) == (len(THREADS), 0, 0), first
        assert check(old, new).clean
