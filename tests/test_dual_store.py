"""DualStore over real stores: a failing secondary never fails the caller and is journaled per
item; read-switch falls back to old and copies the item, but never brings back one that old
missed the delete of; decommission journals deletes as tombstones; a DualSaver and a DualStore
sharing a phase source read one phase at every moment; the async shell over async stores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from langgraph.store.base import GetOp, PutOp

from dualsaver import DualSaver, DualStore, Journal, Phase, SecondaryWriteError
from dualsaver.control.journal import JournalEntry, item_of
from dualsaver.control.record import open_phase_record
from dualsaver.control.sources import PollingPhaseSource
from dualsaver.items import check_items
from dualsaver.items._adapters import aitems_for, items_for
from dualsaver.migrate import repairs_from_journal
from tests.store_support import FaultyStore, acontents, async_store, contents, sync_store
from tests.savers import sync_saver


def _pending(path) -> list[JournalEntry]:
    journal = Journal(path)
    try:
        return list(journal.pending())
    finally:
        journal.close()


@pytest.mark.parametrize("phase", [Phase.SHADOW_WRITE, Phase.BACKFILL, Phase.READ_SWITCH], ids=str)
def test_a_failing_secondary_is_journaled_per_item_not_raised(tmp_path, pg_url, phase):
    with sync_store("sqlite", tmp=tmp_path) as a, sync_store("postgres", pg_url=pg_url) as b:
        old, new = FaultyStore(a), FaultyStore(b)
        secondary = new if phase is not Phase.READ_SWITCH else old
        secondary.mode = "raise"
        store = DualStore(old, new, phase, journal=tmp_path / "j.sqlite", circuit_cool_down=None)
        store.put(("users", "u1"), "profile", {"text": "likes tea"})
        store.batch([PutOp(("users", "u2"), "profile", {"text": "likes coffee"}, ttl=30.0),
                     PutOp(("users", "u1"), "old-note", None)])
        assert store.get(("users", "u1"), "profile").value == {"text": "likes tea"}  # the primary answers
        assert store.flush(timeout=30)  # shadow-write writes the secondary behind the caller
        rows = _pending(tmp_path / "j.sqlite")
        role = "new" if secondary is new else "old"
        assert {(r.store, r.operation, item_of(r)) for r in rows} == {
            (role, "store.put", (("users", "u1"), "profile")),
            (role, "store.put", (("users", "u2"), "profile")),
            (role, "store.delete", (("users", "u1"), "old-note")),
        }
        assert all(r.thread_id is None and r.error.startswith("StoreDown") for r in rows)
        assert contents(secondary.inner) == {} and store.secondary_failures["store.put"] == 2
        # The checkpoint repair leaves item entries to the store's own repair.
        assert repairs_from_journal(rows, source="old" if role == "new" else "new") == []
        store.close()


def test_strict_raises_after_journaling(tmp_path):
    with sync_store("sqlite", tmp=tmp_path) as a, sync_store("sqlite", tmp=tmp_path) as b:
        new = FaultyStore(b)
        new.mode = "raise"
        store = DualStore(a, new, Phase.BACKFILL, strict=True, journal=tmp_path / "j.sqlite")
        with pytest.raises(SecondaryWriteError):
            store.put(("docs",), "d1", {"text": "x"})
        assert a.get(("docs",), "d1").value == {"text": "x"}  # the primary took it first
        assert [item_of(r) for r in _pending(tmp_path / "j.sqlite")] == [(("docs",), "d1")]
        store.close()


def test_read_switch_copies_a_missed_item_but_never_revives_a_deleted_one(tmp_path, pg_url):
    with sync_store("sqlite", tmp=tmp_path) as a, sync_store("postgres", pg_url=pg_url) as new:
        old = FaultyStore(a)
        a.put(("users", "u1"), "history", {"text": "from before the migration"})  # never backfilled
        store = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        assert store.get(("users", "u1"), "history").value == {"text": "from before the migration"}
        assert new.get(("users", "u1"), "history").value == {"text": "from before the migration"}  # copied

        store.put(("users", "u1"), "fact", {"text": "short-lived"})
        old.mode = "raise"
        store.delete(("users", "u1"), "fact")  # new deletes it; old misses the delete
        old.mode = None
        assert a.get(("users", "u1"), "fact") is not None  # old still holds the deleted copy
        assert store.get(("users", "u1"), "fact") is None  # and it does not come back
        assert new.get(("users", "u1"), "fact") is None
        store.close()


def test_decommission_journals_deletes_as_tombstones_for_old(tmp_path):
    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("sqlite", tmp=tmp_path) as new:
        store = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        store.put(("docs",), "d1", {"text": "x"})
        store.phase = Phase.DECOMMISSION
        store.delete(("docs",), "d1")
        store.put(("docs",), "d2", {"text": "y"})
        assert old.get(("docs",), "d1") is not None and old.get(("docs",), "d2") is None  # old is not touched
        (row,) = _pending(tmp_path / "j.sqlite")
        assert (row.store, row.operation, item_of(row)) == ("old", "store.delete", (("docs",), "d1"))
        assert row.error.startswith("not applied")
        store.close()


def test_a_saver_and_a_store_sharing_a_source_never_disagree(tmp_path, pg_url):
    with open_phase_record(pg_url) as record, sync_saver("memory") as s_old, sync_saver("memory") as s_new, \
            sync_store("memory") as old, sync_store("memory") as new:
        source = PollingPhaseSource(record, interval=3600, start=False)  # refreshed by hand below
        saver = DualSaver(s_old, s_new, phase=source, journal=tmp_path / "j.sqlite")
        store = DualStore(old, new, phase=saver.phase_source, journal=tmp_path / "j.sqlite")
        version = 0
        for target in [Phase.BACKFILL, Phase.READ_SWITCH, Phase.BACKFILL, Phase.READ_SWITCH, Phase.DECOMMISSION]:
            assert saver.phase is store.phase
            version = record.set_phase(target, expected_version=version, by="test", forced=True).version
            assert saver.phase is store.phase  # the record changed; neither has looked yet
            source.refresh()
            assert saver.phase is store.phase is target
            assert store.phase_origin == saver.phase_origin
        store.close()
        saver.close()  # the saver does not own a source it was given; neither does the store
        assert source.current() is Phase.DECOMMISSION


def test_a_missed_item_delete_is_known_to_the_control_store(pg_url, redis_url):
    from dualsaver.control.journal import item_entry_fields

    for url in (pg_url, redis_url):
        with open_phase_record(url) as record:
            gone = JournalEntry(phase="read-switch", store="old", operation="store.delete", task_id=None,
                                error="StoreDown", **item_entry_fields(("users", "u1"), "fact"))
            record.journal_add([gone], "r1")
            assert record.journal_missed_item_delete("old", ("users", "u1"), "fact")
            assert not record.journal_missed_item_delete("new", ("users", "u1"), "fact")
            assert not record.journal_missed_item_delete("old", ("users", "u1"), "other")
            (entry,) = record.journal_pending()
            assert record.journal_claim([entry.id], by="repair") == 1
            assert not record.journal_missed_item_delete("old", ("users", "u1"), "fact")


@pytest.mark.asyncio
async def test_async_batches_through_every_phase(tmp_path, pg_url):
    async with async_store("sqlite", tmp=tmp_path, indexed=False) as old, \
            async_store("postgres", pg_url=pg_url) as new:
        store = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        assert not store.supports_ttl  # AsyncSqliteStore says it has no TTL: a ttl= would reach one store only
        async with store:
            written = {}
            for n, phase in enumerate([Phase.SHADOW_WRITE, Phase.BACKFILL, Phase.READ_SWITCH]):
                store.phase = phase
                ns = ("users", f"u{n}")
                await store.aput(ns, "profile", {"text": f"user {n}", "n": n})
                await store.aput(ns, "scratch", {"text": "gone soon", "n": n})
                await store.adelete(ns, "scratch")
                written[(ns, "profile")] = {"text": f"user {n}", "n": n}
                assert (await store.aget(ns, "profile")).value == written[(ns, "profile")]
                assert await store.aget(ns, "scratch") is None
                found = await store.asearch(("users",), filter={"n": n})
                assert [(tuple(i.namespace), i.key) for i in found] == [(ns, "profile")]
                assert sorted(await store.alist_namespaces(prefix=("users",))) == sorted(k[0] for k in written)
            assert await store.aflush(timeout=30)
            assert await acontents(old) == written and await acontents(new) == written
            results = await store.abatch([PutOp(("docs",), "d", {"text": "t"})])
            assert results == [None] and (await new.aget(("docs",), "d")).value == {"text": "t"}
        assert not store.secondary_failures


def test_from_settings_reads_what_the_saver_reads(tmp_path):
    path = tmp_path / "dualsaver.toml"
    path.write_text(
        '[migration]\nphase = "backfill"\nstrict = true\nsecondary_timeout = 2.5\nwrite_behind = false\n'
        f'circuit_cool_down = 7.0\njournal = "{tmp_path / "j.sqlite"}"\ncanary_percent = 10\n'
    )
    with sync_saver("memory") as s_old, sync_saver("memory") as s_new, \
            sync_store("memory") as old, sync_store("memory") as new:
        saver = DualSaver.from_settings(s_old, s_new, path)
        store = DualStore.from_settings(old, new, path, secondary_timeout=1.0)  # an argument wins
        assert store.phase is saver.phase is Phase.BACKFILL
        assert (store.strict, store.write_behind, store.secondary_timeout) == (True, False, 1.0)
        assert store.breakers["new"].cool_down == 7.0
        store.put(("docs",), "d", {"text": "x"})
        assert new.get(("docs",), "d").value == {"text": "x"}  # written at once: no write-behind
        store.close()
        saver.close()


def test_to_the_official_redis_store(tmp_path, redis_stack):
    redis_stack.flushall()
    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("redis", redis_url=redis_stack.url_for("redis")) as new:
        store = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        written = {}
        for phase in [Phase.SHADOW_WRITE, Phase.BACKFILL, Phase.READ_SWITCH]:
            store.phase = phase
            ns = ("users", phase.value)
            store.put(ns, "profile", {"text": f"likes {phase.value}", "n": 1}, ttl=30.0)
            written[(ns, "profile")] = {"text": f"likes {phase.value}", "n": 1}
            assert store.get(ns, "profile").value == written[(ns, "profile")]
            (best,) = store.search(("users",), query=f"likes {phase.value}", limit=1)
            assert (tuple(best.namespace), best.value) == (ns, written[(ns, "profile")])
        assert store.flush(timeout=30)
        assert contents(new) == written == contents(old)
        assert not store.secondary_failures
        store.close()


def _rewind_expiries(sqlite_store, pg_url: str) -> None:
    """Every TTL'd item of both stores due to expire in ten minutes, as if written a while ago:
    one instant for both (each store's own clock, SQLite's in whole seconds, read a connection
    apart, put them more than the check's second of tolerance apart now and then)."""
    at = (datetime.now(timezone.utc) + timedelta(minutes=10)).replace(microsecond=0)
    sqlite_store.conn.execute("UPDATE store SET expires_at = ? WHERE ttl_minutes IS NOT NULL",
                              (at.strftime("%Y-%m-%d %H:%M:%S"),))
    sqlite_store.conn.commit()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE store SET expires_at = %s WHERE ttl_minutes IS NOT NULL", (at,))


@pytest.mark.parametrize("phase", [Phase.SHADOW_WRITE, Phase.READ_SWITCH], ids=str)
def test_a_read_renews_an_items_ttl_in_both_stores(tmp_path, pg_url, phase):
    """A get or search renews the TTL of what it returns (refresh_on_read) in the store that
    answers it; the other store renews it too, or its copy would expire first: in new, a
    memory the user kept alive by using it would vanish after the switch (search does not
    fall back); in old, on a rollback. And the check would report every item read."""
    with sync_store("sqlite", tmp=tmp_path) as old, sync_store("postgres", pg_url=pg_url) as new:
        store = DualStore(old, new, phase, journal=tmp_path / "j.sqlite")
        store.put(("users", "u1"), "got", {"text": "likes tea"}, ttl=60)
        store.put(("users", "u1"), "found", {"text": "likes rain"}, ttl=60)
        store.put(("users", "u1"), "untouched", {"text": "likes snow"}, ttl=60)
        assert store.flush(timeout=30)
        _rewind_expiries(old, pg_url)
        assert check_items(old, new).clean

        assert store.get(("users", "u1"), "got").value == {"text": "likes tea"}
        assert [i.key for i in store.search(("users", "u1"), filter={"text": "likes rain"})] == ["found"]
        assert store.flush(timeout=30)

        soon = datetime.now(timezone.utc) + timedelta(minutes=30)
        for side in (old, new):
            held = items_for(side).get_items([(("users", "u1"), k) for k in ("got", "found", "untouched")])
            expiries = {key: held[(("users", "u1"), key)].expires_at for key in ("got", "found", "untouched")}
            assert expiries["got"] > soon and expiries["found"] > soon, (type(side).__name__, expiries)
            assert expiries["untouched"] < soon  # a read renews only what it returned
        report = check_items(old, new)
        assert report.clean, [d.to_dict() for d in report.divergences]
        store.close()


def test_postgres_stores_renew_without_a_ttl_config(tmp_path, pg_url_factory):
    """The official PostgreSQL stores renew a TTL on every read asking for it, ttl config or
    not (as the stores an Agent Server deployment opens have none): so does the secondary."""
    from langgraph.store.postgres import PostgresStore

    urls = [pg_url_factory(), pg_url_factory()]
    with PostgresStore.from_conn_string(urls[0]) as old, PostgresStore.from_conn_string(urls[1]) as new:
        old.setup()
        new.setup()
        store = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        store.put(("users", "u1"), "got", {"text": "likes tea"}, ttl=60)
        assert store.flush(timeout=30)
        for url in urls:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE store SET expires_at = NOW() + interval '10 minutes'")
        assert store.get(("users", "u1"), "got") is not None
        assert store.flush(timeout=30)
        report = check_items(old, new)
        assert report.clean, [d.to_dict() for d in report.divergences]
        store.close()


async def test_the_async_shell_renews_alike(tmp_path, pg_url_factory):
    from langgraph.store.postgres.aio import AsyncPostgresStore

    urls = [pg_url_factory(), pg_url_factory()]
    async with AsyncPostgresStore.from_conn_string(urls[0]) as old, AsyncPostgresStore.from_conn_string(urls[1]) as new:
        await old.setup()
        await new.setup()
        store = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite")
        await store.aput(("users", "u1"), "got", {"text": "likes tea"}, ttl=60)
        for url in urls:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE store SET expires_at = NOW() + interval '10 minutes'")
        assert [i.key for i in await store.asearch(("users", "u1"))] == ["got"]
        soon = datetime.now(timezone.utc) + timedelta(minutes=30)
        for side in (old, new):
            (held,) = (await aitems_for(side).aget_items([(("users", "u1"), "got")])).values()
            assert held.expires_at > soon, type(side).__name__
        await store.aclose()


def test_a_renewal_the_secondary_misses_is_journaled_for_repair(tmp_path, pg_url):
    with sync_store("sqlite", tmp=tmp_path) as a, sync_store("postgres", pg_url=pg_url) as new:
        old = FaultyStore(a)
        store = DualStore(old, new, Phase.READ_SWITCH, journal=tmp_path / "j.sqlite", circuit_cool_down=None)
        store.put(("users", "u1"), "got", {"text": "likes tea"}, ttl=60)
        _rewind_expiries(a, pg_url)
        old.mode = "down"
        assert store.get(("users", "u1"), "got").value == {"text": "likes tea"}  # the read does not fail
        (row,) = _pending(tmp_path / "j.sqlite")
        assert (row.store, row.operation, item_of(row)) == ("old", "store.put", (("users", "u1"), "got"))
        store.close()


@pytest.mark.parametrize("control", ["postgres", "redis"])
@pytest.mark.parametrize("writer, reader, missing", [(Phase.BACKFILL, Phase.READ_SWITCH, "new"),
                                                     (Phase.READ_SWITCH, Phase.BACKFILL, "old")])
def test_an_item_one_store_missed_on_a_replica_of_the_other_phase_is_read_from_the_other(
    tmp_path, request, control, writer, reader, missing
):
    """The rolling moves between backfill and read-switch: the writer's second store misses
    a put (journaled, shipped); the reader, whose read store is that one, answered the item
    with the older value until a repair; it now answers it from the other store, and so a
    search or a listing of namespaces that covers it. Items no store missed anything of are
    read as the phase routes them."""
    from tests.ops_support import eventually

    control_url = request.getfixturevalue("pg_url" if control == "postgres" else "redis_url")
    ns = ("users", "u1")
    with sync_store("sqlite", tmp=tmp_path, indexed=False) as o, \
            sync_store("sqlite", tmp=tmp_path, indexed=False) as n:
        stores = {"old": o, "new": n}
        faulty = FaultyStore(stores[missing])
        a = DualStore(*(faulty if role == missing else stores[role] for role in ("old", "new")), writer,
                      control=control_url, journal=tmp_path / "a.sqlite", circuit_cool_down=None)
        b = DualStore(o, n, reader, control=control_url, journal=tmp_path / "b.sqlite")
        try:
            a.put(ns, "fact", {"text": "likes tea"})
            assert b.get(ns, "fact").value == {"text": "likes tea"}
            faulty.mode = "raise"
            a.put(ns, "fact", {"text": "likes coffee"})  # acknowledged by A; its second store misses it
            a.put(("users", "u2"), "fact", {"text": "new here"})  # ... and a namespace it would have begun
            faulty.mode = None
            assert a.secondary_failures.total() > 0
            eventually(lambda: b.get(ns, "fact").value == {"text": "likes coffee"}, "B answers A's put", timeout=20)
            assert stores[missing].get(ns, "fact").value == {"text": "likes tea"}  # stale there
            both = b.batch([GetOp(ns, "fact"), GetOp(ns, "other")])  # one batch, answered by both stores
            assert [item and item.value for item in both] == [{"text": "likes coffee"}, None]
            found = {(item.namespace, item.key): item.value for item in b.search(("users",))}
            assert found == {(ns, "fact"): {"text": "likes coffee"}, (("users", "u2"), "fact"): {"text": "new here"}}
            assert b.list_namespaces(prefix=("users",)) == [("users", "u1"), ("users", "u2")]
            stores[missing].put(("teams", "t1"), "k", {"text": "y"})  # covers nothing missed: the read store answers
            assert [item.key for item in b.search(("teams",))] == ["k"]
            assert b.list_namespaces(prefix=("teams",)) == [("teams", "t1")]
            b.put(ns, "fact", {"text": "likes cocoa"})  # B writes it on, both stores
            assert b.get(ns, "fact").value == {"text": "likes cocoa"}
            stores[missing].put(ns, "only-there", {"text": "x"})  # no store missed anything of it: the read store
            assert b.get(ns, "only-there").value == {"text": "x"}
        finally:
            a.close()
            b.close()
