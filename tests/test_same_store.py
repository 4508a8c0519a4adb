"""A backfill, check or repair given one store as both old and new is refused before it
touches anything: a repair would delete the threads it is to copy (they are gone from the
source too), a check would find the store clean against itself (evidence for a switch that
moved nothing), a backfill would report an exact copy of nothing. Two names of one store
are caught (another path to one SQLite file, two connections to one PostgreSQL database,
two Redis savers under one prefix); two stores in one server are not refused (another
PostgreSQL schema, another Redis prefix). The neighbouring slip, a repair from a report with
--old and --new the other way round, is refused too: it would replace the old store's
threads and items with the new store's.

Every store is real: SQLite files, embedded PostgreSQL, embedded Redis.
"""

from __future__ import annotations

import psycopg
import pytest

from dualsaver import SameStore, abackfill, acheck, arepair, backfill, check, repair
from dualsaver.control.journal import Journal, JournalEntry
from dualsaver.items import open_item_store
from dualsaver.stores import aopen_saver, open_saver, same_store
from tests import check_support as cs
from tests.ops_support import run_cli

THREADS = ["t-a", "t-b"]


def _names_of_one_store(kind: str, tmp_path, pg_url: str, redis_url: str) -> tuple[str, str]:
    """Two URLs that reach one store, written differently where the scheme allows it."""
    if kind == "sqlite":
        (tmp_path / "sub").mkdir()
        return f"sqlite:///{tmp_path / 'one.sqlite'}", f"sqlite:///{tmp_path / 'sub' / '..' / 'one.sqlite'}"
    if kind == "postgres":
        return pg_url, pg_url
    return f"{redis_url}?prefix=app", f"{redis_url}?prefix=app"


def _history(saver) -> dict[str, int]:
    return {t: sum(1 for _ in saver.list({"configurable": {"thread_id": t}})) for t in THREADS}


def _other_schema(pg_url: str) -> str:
    """The URL of a schema `other` (created here) in `pg_url`'s database: another store."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA other")
    return f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3Dother"


def _journal(tmp_path, *entries: JournalEntry) -> None:
    """A local journal (tmp_path/journal.sqlite) holding `entries`: writes the new store missed."""
    journal = Journal(tmp_path / "journal.sqlite")
    for entry in entries:
        journal.record(entry)
    journal.close()


async def _each_async_job_refuses(old, new) -> None:
    for run in (lambda: arepair(old, new, THREADS, replace=True), lambda: abackfill(old, new),
                lambda: acheck(old, new)):
        with pytest.raises(SameStore):
            await run()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis"])
def test_a_store_given_as_both_old_and_new_is_refused_and_keeps_its_history(kind, tmp_path, pg_url, redis_url):
    first, second = _names_of_one_store(kind, tmp_path, pg_url, redis_url)
    with open_saver(first) as old, open_saver(second) as new:
        cs.populate(old, THREADS)
        before = _history(old)
        assert all(before.values())
        assert same_store(old, new)
        for run in (lambda: repair(old, new, THREADS, replace=True), lambda: backfill(old, new),
                    lambda: check(old, new), lambda: repair(old, old, THREADS, replace=True)):
            with pytest.raises(SameStore, match="same store"):
                run()
        assert _history(old) == before  # the repair deleted nothing


async def test_the_async_forms_refuse_it_too(tmp_path, pg_url):
    """Over async savers, and over sync ones (run in worker threads behind an adapter)."""
    async with aopen_saver(pg_url) as aold, aopen_saver(pg_url) as anew:
        await _each_async_job_refuses(aold, anew)
    with open_saver(pg_url) as old, open_saver(pg_url) as new:
        cs.populate(old, THREADS)
        before = _history(old)
        await _each_async_job_refuses(old, new)
        assert _history(old) == before


def test_two_stores_in_one_server_are_not_one_store(tmp_path, pg_url, redis_url, monkeypatch):
    """Another schema of one PostgreSQL database (a search path in `options`, or the user's
    own schema) and another prefix in one Redis database are other stores: copied, checked."""
    monkeypatch.chdir(tmp_path)  # the backfills' progress
    pairs = [(f"sqlite:///{tmp_path / 'a.sqlite'}", f"sqlite:///{tmp_path / 'b.sqlite'}"),
             (pg_url, _other_schema(pg_url)),
             (f"{redis_url}?prefix=app", f"{redis_url}?prefix=next")]
    for first, second in pairs:
        with open_saver(first) as old, open_saver(second) as new:
            assert not same_store(old, new)
            cs.populate(old, THREADS)
            assert backfill(old, new).failed == 0
            assert check(old, new).clean
            assert _history(new) == _history(old)


def test_the_cli_refuses_a_repair_from_the_journal_of_one_store_under_two_names(tmp_path):
    """The operator's slip: both URLs name the old store. The journal holds a missed delete,
    which a repair replaces (delete on the target, then copy): that would have deleted the
    thread from the only store that held it."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with open_saver(url) as old:
        cs.populate(old, THREADS)
        before = _history(old)
    _journal(tmp_path, JournalEntry("backfill", "new", "delete_thread", "t-a", None, None, None, "down"))
    ran = run_cli("repair", "--old", url, "--new", f"sqlite:///{tmp_path / '.' / 'old.sqlite'}",
                  "--journal", str(tmp_path / "journal.sqlite"), "--phase", "backfill", cwd=tmp_path)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "same store" in ran.stderr
    backfilled = run_cli("backfill", "--old", url, "--new", url, cwd=tmp_path)
    assert backfilled.returncode == 2 and "same store" in backfilled.stderr
    with open_saver(url) as old:
        assert _history(old) == before


def test_the_cli_refuses_a_repair_from_the_journal_with_the_stores_the_other_way_round(tmp_path):
    """The journal names roles, not stores: "new missed the delete of t-a". With --old and
    --new swapped, that repair would copy t-a from the new store (which missed the delete)
    back into the old one (which made it): a conversation the user deleted, resurrected in
    the source of truth. The pair the last backfill recorded tells the two apart by
    fingerprint, however the URLs are written."""
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(old_url) as old:
        cs.populate(old, THREADS)
        after_delete = {**_history(old), "t-a": 0}
    backfilled = run_cli("backfill", "--old", old_url, "--new", new_url, cwd=tmp_path)
    assert backfilled.returncode == 0, backfilled.stdout + backfilled.stderr
    with open_saver(old_url) as old:
        old.delete_thread("t-a")  # the application's delete; the new store missed it
    _journal(tmp_path, JournalEntry("backfill", "new", "delete_thread", "t-a", None, None, None, "down"))
    repair_ = ("repair", "--journal", str(tmp_path / "journal.sqlite"), "--phase", "backfill")
    ran = run_cli(*repair_, "--old", new_url, "--new", f"sqlite:///{tmp_path / '.' / 'old.sqlite'}", cwd=tmp_path)
    assert ran.returncode == 2 and "other way round" in ran.stderr, ran.stdout + ran.stderr
    with open_saver(old_url) as old:
        assert _history(old) == after_delete
    repaired = run_cli(*repair_, "--old", old_url, "--new", new_url, cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    with open_saver(old_url) as old, open_saver(new_url) as new:
        assert _history(new) == _history(old) == after_delete


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_long_term_stores_jobs_refuse_one_store_under_two_names(kind, tmp_path, pg_url, monkeypatch):
    from dualsaver import backfill_items, check_items, repair_items

    monkeypatch.chdir(tmp_path)  # the backfill's progress
    url = f"sqlite:///{tmp_path / 'store.sqlite'}" if kind == "sqlite" else pg_url
    other = f"sqlite:///{tmp_path / '.' / 'store.sqlite'}" if kind == "sqlite" else pg_url
    with open_item_store(url) as old, open_item_store(other) as new:
        old.put(("users", "u1"), "prefs", {"tone": "brief"})
        for run in (lambda: backfill_items(old, new), lambda: check_items(old, new),
                    lambda: repair_items(old, new, [(("users", "u1"), "prefs")])):
            with pytest.raises(SameStore, match="same store"):
                run()
        assert old.get(("users", "u1"), "prefs").value == {"tone": "brief"}
    with open_item_store(url) as old, open_item_store(f"sqlite:///{tmp_path / 'next.sqlite'}") as new:
        assert backfill_items(old, new).items == 1 and check_items(old, new).clean

    ran = run_cli("check", "--store-old", url, "--store-new", other, cwd=tmp_path)
    assert ran.returncode == 2 and "same store" in ran.stderr, ran.stdout + ran.stderr


def test_the_cli_refuses_a_repair_from_a_report_made_with_the_stores_the_other_way_round(tmp_path, monkeypatch):
    """The neighbouring slip: --old and --new swapped between the check and the repair. A
    thread that differs would be replaced in the store being left (deleted, then copied from
    the new store's wrong copy): the old store's history is what the repair must not touch."""
    monkeypatch.chdir(tmp_path)
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(old_url) as old, open_saver(new_url) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        cs.rewrite_thread(new, "t-a", lambda r: [cs.with_metadata(r[0]), *r[1:]])  # new's copy is wrong
        kept = cs.items(old, "t-a")
    checked = run_cli("check", "--old", old_url, "--new", new_url, "--report", "check.json", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr  # divergent: t-a
    ran = run_cli("repair", "--old", new_url, "--new", old_url, "--report", "check.json", cwd=tmp_path)
    assert ran.returncode == 2 and "other way round" in ran.stderr, ran.stdout + ran.stderr
    # written another way, the URLs no longer match the report's names; the stores' fingerprints do
    (tmp_path / "link").symlink_to(tmp_path)
    respelled = [f"sqlite:///{tmp_path / 'link' / name}" for name in ("new.sqlite", "old.sqlite")]
    ran = run_cli("repair", "--old", respelled[0], "--new", respelled[1], "--report", "check.json", cwd=tmp_path)
    assert ran.returncode == 2 and "last recorded check" in ran.stderr, ran.stdout + ran.stderr
    with open_saver(old_url) as old:
        assert cs.items(old, "t-a") == kept
    repaired = run_cli("repair", "--old", old_url, "--new", new_url, "--report", "check.json", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr  # the right way round: repaired


def test_a_check_and_a_repair_both_made_the_other_way_round_are_refused_by_the_backfills_pair(tmp_path):
    """Swapped consistently, the report's names match the repair's, and the newest record is
    that crossed check: the backfill, which copied old to new, says which way the migration
    runs. The repair would have replaced the old store's thread with the new store's wrong copy."""
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(old_url) as old:
        cs.populate(old, THREADS)
    backfilled = run_cli("backfill", "--old", old_url, "--new", new_url, cwd=tmp_path)
    assert backfilled.returncode == 0, backfilled.stdout + backfilled.stderr
    with open_saver(old_url) as old, open_saver(new_url) as new:
        cs.rewrite_thread(new, "t-a", lambda r: [cs.with_metadata(r[0]), *r[1:]])  # new's copy is wrong
        kept = cs.items(old, "t-a")
    swapped = ("--old", new_url, "--new", old_url)
    checked = run_cli("check", *swapped, "--report", "check.json", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    ran = run_cli("repair", *swapped, "--report", "check.json", cwd=tmp_path)
    assert ran.returncode == 2 and "last recorded backfill" in ran.stderr, ran.stdout + ran.stderr
    with open_saver(old_url) as old:
        assert cs.items(old, "t-a") == kept


def test_an_item_repair_from_a_report_made_the_other_way_round_is_refused(tmp_path, monkeypatch):
    """The same slip for the long-term store, from a report of both halves: the item the new
    store lacks would be deleted from the old one (a repair makes the target match its source)."""
    monkeypatch.chdir(tmp_path)
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    old_items, new_items = f"sqlite:///{tmp_path / 'items-old.sqlite'}", f"sqlite:///{tmp_path / 'items-new.sqlite'}"
    with open_saver(old_url) as old, open_saver(new_url) as new, open_item_store(old_items) as store, \
            open_item_store(new_items):
        cs.populate(old, THREADS)
        cs.clone(old, new)
        store.put(("users", "u1"), "prefs", {"tone": "brief"})  # missing in new
    both = ("--old", old_url, "--new", new_url, "--store-old", old_items, "--store-new", new_items)
    checked = run_cli("check", *both, "--report", "check.json", cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    swapped = ("--store-old", new_items, "--store-new", old_items)
    ran = run_cli("repair", *swapped, "--report", "check.json", cwd=tmp_path)
    assert ran.returncode == 2 and "other way round" in ran.stderr, ran.stdout + ran.stderr
    with open_item_store(old_items) as store:
        assert store.get(("users", "u1"), "prefs").value == {"tone": "brief"}


def test_an_item_repair_from_the_journal_deletes_only_what_the_target_missed_deleting(tmp_path, monkeypatch):
    """The journal names roles, not stores, so a repair from it cannot tell swapped stores by
    their names. What it can tell: an item the journal names by a missed put was accepted by
    the source. When the source lacks it, the stores are the other way round (or it expired),
    and deleting it from the target would delete the only copy; only an item whose delete the
    target missed is deleted. Run the right way round, both are repaired."""
    monkeypatch.chdir(tmp_path)
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_item_store(old_url) as old, open_item_store(new_url) as new:
        old.put(("users", "u1"), "prefs", {"tone": "brief"})  # the put new missed
        new.put(("users", "u1"), "gone", {"stale": True})  # the delete new missed (old deleted it)
    _journal(tmp_path, JournalEntry("shadow-write", "new", "store.put", None, '["users", "u1"]', "prefs", None, "down"),
             JournalEntry("shadow-write", "new", "store.delete", None, '["users", "u1"]', "gone", None, "down"))
    repair = ("repair", "--journal", str(tmp_path / "journal.sqlite"), "--phase", "shadow-write")

    swapped = run_cli(*repair, "--store-old", new_url, "--store-new", old_url, cwd=tmp_path)
    assert swapped.returncode == 1, swapped.stdout + swapped.stderr  # still divergent: not repaired
    assert "other way round" in swapped.stdout
    with open_item_store(old_url) as old:
        assert old.get(("users", "u1"), "prefs").value == {"tone": "brief"}  # the only copy kept

    right = run_cli(*repair, "--store-old", old_url, "--store-new", new_url, cwd=tmp_path)
    assert right.returncode == 0, right.stdout + right.stderr
    with open_item_store(new_url) as new:
        assert new.get(("users", "u1"), "prefs").value == {"tone": "brief"}
        assert new.get(("users", "u1"), "gone") is None  # the missed delete is done


def test_the_cli_check_refuses_one_postgres_store_and_checks_two_schemas_of_one_database(tmp_path, pg_url):
    """The check command's own guard compares the stores' fingerprints (a database, whatever
    the address that reached it); two schemas of one database are two stores all the same."""
    other_schema = _other_schema(pg_url)
    with open_saver(pg_url) as old, open_saver(other_schema):
        cs.populate(old, THREADS)
    refused = run_cli("check", "--old", pg_url, "--new", pg_url, cwd=tmp_path)
    assert refused.returncode == 2 and "same store" in refused.stderr, refused.stdout + refused.stderr
    checked = run_cli("check", "--old", pg_url, "--new", other_schema, cwd=tmp_path)
    assert checked.returncode == 1, checked.stdout + checked.stderr  # divergent: new is empty
    assert "missing_in_new" in checked.stdout


def test_an_item_repair_from_the_journal_with_the_stores_crossed_against_the_last_backfill_is_refused(tmp_path):
    """The case the source's contents cannot tell: the new store holds an older version of an
    item whose update it missed. With the stores swapped, the repair would copy that older
    version over the old store's current one. The pair the last store backfill recorded
    (by fingerprint) tells them apart."""
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_item_store(old_url) as old:
        old.put(("users", "u1"), "prefs", {"tone": "brief"})
    backfilled = run_cli("backfill", "--store-old", old_url, "--store-new", new_url, cwd=tmp_path)
    assert backfilled.returncode == 0, backfilled.stdout + backfilled.stderr
    with open_item_store(old_url) as old:
        old.put(("users", "u1"), "prefs", {"tone": "detailed"})  # the update new missed
    _journal(tmp_path, JournalEntry("shadow-write", "new", "store.put", None, '["users", "u1"]', "prefs", None, "down"))
    repair = ("repair", "--journal", str(tmp_path / "journal.sqlite"), "--phase", "shadow-write")

    swapped = run_cli(*repair, "--store-old", new_url, "--store-new", f"sqlite:///{tmp_path / '.' / 'old.sqlite'}",
                      cwd=tmp_path)
    assert swapped.returncode == 2 and "last recorded store backfill" in swapped.stderr, swapped.stdout + swapped.stderr
    with open_item_store(old_url) as old:
        assert old.get(("users", "u1"), "prefs").value == {"tone": "detailed"}

    right = run_cli(*repair, "--store-old", old_url, "--store-new", new_url, cwd=tmp_path)
    assert right.returncode == 0, right.stdout + right.stderr
    with open_item_store(new_url) as new:
        assert new.get(("users", "u1"), "prefs").value == {"tone": "detailed"}


def test_the_cli_refuses_one_postgres_server_under_two_host_names(tmp_path, pg_url):
    """Another name of the same server (`pg.internal`, reached through `hostaddr`) is not told
    apart by the jobs' address comparison, which asks nothing; the commands compare the stores'
    fingerprints (the server's system id and the database), which they ask each store for."""
    from urllib.parse import urlsplit

    address = urlsplit(pg_url).hostname
    other_name = pg_url.replace(f"@{address}:", "@pg.internal:") + ("&" if "?" in pg_url else "?") + f"hostaddr={address}"
    with open_saver(pg_url) as old:
        cs.populate(old, THREADS)
        before = _history(old)
    _journal(tmp_path, JournalEntry("backfill", "new", "delete_thread", "t-a", None, None, None, "down"))
    ran = run_cli("repair", "--old", pg_url, "--new", other_name, "--journal", str(tmp_path / "journal.sqlite"),
                  "--phase", "backfill", cwd=tmp_path)
    assert ran.returncode == 2 and "same store" in ran.stderr, ran.stdout + ran.stderr
    backfilled = run_cli("backfill", "--old", pg_url, "--new", other_name, cwd=tmp_path)
    assert backfilled.returncode == 2 and "same store" in backfilled.stderr, backfilled.stdout + backfilled.stderr
    with open_saver(pg_url) as old:
        assert _history(old) == before


def test_a_backfill_with_the_stores_the_other_way_round_is_refused_by_the_last_backfills_pair(tmp_path):
    """Swapped flags make a backfill copy new into old: a thread deleted from old whose delete
    new missed would come back into the store of record, and the swapped pair, recorded as
    the newest backfill, would turn the crossed-pair guard of every later repair around."""
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(old_url) as old:
        cs.populate(old, THREADS)
    assert run_cli("backfill", "--old", old_url, "--new", new_url, cwd=tmp_path).returncode == 0
    with open_saver(old_url) as old:
        old.delete_thread("t-a")  # as the application did; new missed the delete
    ran = run_cli("backfill", "--old", new_url, "--new", old_url, cwd=tmp_path)
    assert ran.returncode == 2 and "other way round" in ran.stderr and "--reverse" in ran.stderr, ran.stderr
    with open_saver(old_url) as old:
        assert old.get_tuple({"configurable": {"thread_id": "t-a"}}) is None  # nothing came back


def test_an_item_backfill_with_the_stores_the_other_way_round_is_refused(tmp_path):
    old_url, new_url = f"sqlite:///{tmp_path / 'old.sqlite'}", f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_item_store(old_url) as old:
        old.put(("users", "u1"), "prefs", {"tone": "brief"})
    assert run_cli("backfill", "--store-old", old_url, "--store-new", new_url, cwd=tmp_path).returncode == 0
    with open_item_store(old_url) as old:
        old.delete(("users", "u1"), "prefs")  # as the application did; new missed the delete
    ran = run_cli("backfill", "--store-old", new_url, "--store-new", old_url, cwd=tmp_path)
    assert ran.returncode == 2 and "other way round" in ran.stderr, ran.stdout + ran.stderr
    with open_item_store(old_url) as old:
        assert old.get(("users", "u1"), "prefs") is None  # nothing came back
