"""The control store's fleet API on each backend (PostgreSQL, Redis, Redis Cluster): the
journal (added by many replicas, each entry claimed once however many repairs race), a
backfill job's finished threads, status by prefix, and a fresh store opened by many at once."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualsaver.control.journal import JournalEntry, Stale, item_entry_fields, item_of
from dualsaver.control.record import open_control_store


@pytest.fixture(params=["postgres", "redis", "redis-cluster"])
def control_url(request) -> str:
    fixture = {"postgres": "pg_url", "redis": "redis_url", "redis-cluster": "redis_cluster_url"}[request.param]
    return request.getfixturevalue(fixture)


def _item_entry(key: str, store: str = "new", operation: str = "store.put") -> JournalEntry:
    return JournalEntry(phase="shadow-write", store=store, operation=operation, thread_id=None,
                        **{k: v for k, v in item_entry_fields(("memories", "u1"), key).items() if k != "thread_id"},
                        task_id=None, error="StoreDown: refused")


def _entry(thread: str, operation: str = "put", store: str = "new") -> JournalEntry:
    return JournalEntry(phase="backfill", store=store, operation=operation, thread_id=thread,
                        checkpoint_ns="", checkpoint_id=f"c-{thread}", task_id=None, error="StoreDown: refused")


def test_each_entry_is_claimed_once_however_many_repairs_race(control_url):
    replicas = [open_control_store(control_url) for _ in range(4)]  # first use by all at once
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: replicas[i].journal_add([_entry(f"r{i}-t{n}") for n in range(25)], f"r{i}"),
                          range(4)))
        pending = replicas[0].journal_pending()
        assert len(pending) == 100 and len({e.id for e in pending}) == 100
        assert [e.id for e in pending] == sorted(e.id for e in pending)  # in the order they arrived
        assert {e.thread_id for e in pending} == {f"r{i}-t{n}" for i in range(4) for n in range(25)}

        ids = [e.id for e in pending]
        start = threading.Barrier(4)

        def repair(k: int) -> int:  # overlapping halves, rotated: every id wanted by two repairs
            start.wait()
            return replicas[k].journal_claim(ids[k * 25:] + ids[:k * 25][:25], by=f"repair-{k}")

        with ThreadPoolExecutor(4) as pool:
            claimed = list(pool.map(repair, range(4)))
        assert sum(claimed) == 100
        assert replicas[1].journal_pending() == []
        assert replicas[2].journal_claim(ids, by="late") == 0
    finally:
        for r in replicas:
            r.close()


def test_a_missed_delete_is_known_until_repaired(control_url):
    with open_control_store(control_url) as record:
        record.journal_add([_entry("gone", "delete_thread", store="old"), _entry("kept")], "r1")
        assert record.journal_missed_delete("old", "gone")
        assert not record.journal_missed_delete("new", "gone") and not record.journal_missed_delete("old", "kept")
        (delete,) = [e for e in record.journal_pending() if e.operation == "delete_thread"]
        assert record.journal_claim([delete.id], by="repair") == 1
        assert not record.journal_missed_delete("old", "gone")


def test_a_jobs_finished_threads_and_restart(control_url):
    with open_control_store(control_url) as record, open_control_store(control_url) as elsewhere:
        record.job_begin("job-a", {"shard": "0/2", "old": "o", "new": "n"}, restart=False)
        record.done_add("job-a", ["t1", "t2"])
        record.job_update("job-a", {"threads_done": 2, "total": 5})
        # another machine sees it, and a second job of the same store is apart
        assert elsewhere.done_filter("job-a", ["t1", "t3", "t2"]) == {"t1", "t2"}
        assert elsewhere.done_count("job-a") == 2 and elsewhere.done_count("job-b") == 0
        (job,) = [j for j in elsewhere.jobs() if j["job"] == "job-a"]
        assert (job["shard"], job["threads_done"], job["total"]) == ("0/2", 2, 5)
        elsewhere.job_begin("job-a", {"shard": "0/2", "old": "o", "new": "n"}, restart=False)  # a resume
        assert record.done_count("job-a") == 2
        elsewhere.job_begin("job-a", {"shard": "0/2", "old": "o", "new": "n"}, restart=True)
        assert record.done_count("job-a") == 0 and record.done_filter("job-a", ["t1"]) == set()


def test_status_by_prefix(control_url):
    with open_control_store(control_url) as record:
        for key in ("check/0of2", "check/1of2", "check", "backfill/all"):
            record.put_status(key, {"key": key})
        assert set(record.list_status("check/")) == {"check/0of2", "check/1of2"}
        assert record.get_status("check") == {"key": "check"}
        with open_control_store(control_url, name="another-migration") as other:
            assert other.list_status("check/") == {} and other.journal_pending() == []


def test_the_threads_and_items_each_store_missed_until_repaired(control_url):
    item = JournalEntry(phase="shadow-write", store="new", operation="store.put", thread_id=None,
                        checkpoint_ns='["docs"]', checkpoint_id="k", task_id=None, error="StoreDown: refused")
    with open_control_store(control_url) as record:
        record.journal_add([_entry("t1"), _entry("t1", "put_writes"), _entry("t2"), _entry("t3", store="old"),
                            _entry("t4", "delete_thread", store="old"), item], "r1")
        assert record.journal_stale("new") == Stale(frozenset({"t1", "t2"}), frozenset({(("docs",), "k")}))
        assert record.journal_stale("old") == Stale(frozenset({"t3", "t4"}))
        t1 = [e.id for e in record.journal_pending() if e.thread_id == "t1"]
        record.journal_claim(t1[:1], by="repair")
        assert record.journal_stale("new").threads == {"t1", "t2"}  # one of its entries is still open
        record.journal_claim(t1[1:], by="repair")
        (k,) = [e.id for e in record.journal_pending() if e.thread_id is None]
        record.journal_claim([k], by="repair")
        assert record.journal_stale("new") == Stale(frozenset({"t2"}))


@given(steps=st.lists(st.tuples(st.booleans(), st.sampled_from(["old", "new"]), st.sampled_from(["a", "b", "c"]),
                                st.booleans()), max_size=12))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_what_each_store_missed_is_what_its_open_entries_name(control_url, steps):
    """Any order of adds and claims, of threads' and items' entries: each store's stale
    threads and items are those its open entries name."""
    name = f"prop-{uuid.uuid4().hex[:8]}"
    with open_control_store(control_url, name=name) as record:
        for add, store, name_, is_item in steps:
            entry = _item_entry(name_, store) if is_item else _entry(name_, store=store)
            if add:
                record.journal_add([entry], "r1")
                continue
            pending = [e.id for e in record.journal_pending()
                       if (e.store, e.thread_id, e.checkpoint_ns) == (store, entry.thread_id, entry.checkpoint_ns)]
            record.journal_claim(pending[:1], by="repair")
        for store in ("old", "new"):
            open_ = [e for e in record.journal_pending() if e.store == store]
            assert record.journal_stale(store) == Stale(
                frozenset(e.thread_id for e in open_ if e.thread_id is not None),
                frozenset(item_of(e) for e in open_ if e.thread_id is None))


# An older dualsaver's journal scripts (before the stale index: `git show 75058c8~1:
# dualsaver/control/_record_redis.py`), as a replica still running it calls them.
_OLDER_DELETED_KEY = r"""
local function deleted_key(entry)
  if entry['operation'] == 'delete_thread' and entry['thread_id'] then
    return entry['store'] .. '\0' .. entry['thread_id']
  end
  if entry['operation'] == 'store.delete' then
    return entry['store'] .. '\0item\0' .. entry['checkpoint_ns'] .. '\0' .. entry['checkpoint_id']
  end
  return nil
end
"""
_OLDER_ADD = _OLDER_DELETED_KEY + """
local first = redis.call('INCRBY', KEYS[2], #ARGV) - #ARGV
for i, raw in ipairs(ARGV) do
  local id = first + i
  local entry = cjson.decode(raw)
  entry['id'] = id
  redis.call('HSET', KEYS[1], id, cjson.encode(entry))
  redis.call('ZADD', KEYS[3], id, id)
  local deleted = deleted_key(entry)
  if deleted then
    redis.call('HINCRBY', KEYS[4], deleted, 1)
  end
end
return first
"""
_OLDER_CLAIM = _OLDER_DELETED_KEY + """
local claimed = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then
    claimed = claimed + 1
    local entry = cjson.decode(redis.call('HGET', KEYS[1], ARGV[i]))
    entry['repaired_at'] = tonumber(ARGV[1])
    redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(entry))
    local deleted = deleted_key(entry)
    if deleted then
      redis.call('HINCRBY', KEYS[4], deleted, -1)
    end
  end
end
return claimed
"""


def _older(record, script: str, *args) -> None:
    keys = [record.keys[k] for k in ("journal", "seq", "open", "deletes")]
    record._run(lambda r: r.eval(script, 4, *keys, *args))


def _older_add(record, *entries: JournalEntry) -> None:
    rows = [json.dumps({**dataclasses.asdict(e), "id": None, "ts": 1.0, "replica": "older"}) for e in entries]
    _older(record, _OLDER_ADD, *rows)


def test_a_redis_journal_from_before_the_index_is_counted_once(redis_url):
    """A journal whose entries an older dualsaver added, before the stale-thread index
    existed, is counted when first asked, once, and kept from then on."""
    with open_control_store(redis_url, name="before-index") as record:
        _older_add(record, _entry("t1"), _entry("t2", store="old"))
        record.journal_add([_entry("t1")], "r2")  # this dualsaver: indexed, but the index is not built yet
        assert record.journal_stale("new").threads == {"t1"}
        assert record.journal_stale("old").threads == {"t2"}
        t1 = [e.id for e in record.journal_pending() if e.thread_id == "t1"]
        record.journal_claim(t1[:1], by="repair")
        assert record.journal_stale("new").threads == {"t1"}  # counted twice, not three times
        record.journal_claim(t1[1:], by="repair")
        assert record.journal_stale("new") == Stale()


def test_a_redis_journal_counts_what_older_replicas_add_and_settle_after_the_index(redis_url):
    """A fleet in the middle of upgrading dualsaver: once the index is built, a replica still
    running an older version journals a miss (its script keeps no index) and its repair
    settles another (the same). Both show in what each store missed at the next ask, so
    reads are steered away from that thread and stop being steered from the settled one."""
    with open_control_store(redis_url, name="mixed-versions") as record:
        record.journal_add([_entry("t1"), _entry("t2", store="old")], "r1")
        assert record.journal_stale("new").threads == {"t1"}  # the index built
        _older_add(record, _entry("t3"))
        assert record.journal_stale("new").threads == {"t1", "t3"}
        record.journal_add([_entry("t4")], "r1")  # this version again: the index caught up, and on
        assert record.journal_stale("new").threads == {"t1", "t3", "t4"}
        (t1,) = [e.id for e in record.journal_pending() if e.thread_id == "t1"]
        _older(record, _OLDER_CLAIM, 2.0, t1)  # an older `dualsaver repair`
        assert record.journal_stale("new").threads == {"t3", "t4"}
        assert record.journal_stale("old").threads == {"t2"}
        (t3,) = [e.id for e in record.journal_pending() if e.thread_id == "t3"]
        record.journal_claim([t3], by="repair")
        assert record.journal_stale("new").threads == {"t4"}
