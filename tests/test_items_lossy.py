"""NaN and Infinity in a long-term store item, which only the in-memory store holds: dualsaver's
SQLite and PostgreSQL item writers (orjson) would write them as null, quietly. The item
backfill refuses such an item by name (a bad item naming the rule and the JSON path) unless
`non-finite` is accepted; a live DualStore journals it without taking its secondary for
down."""

from __future__ import annotations

import math

import pytest
from langgraph.store.base import PutOp

from dualsaver import DualStore, Journal, Phase
from dualsaver.control.journal import item_entry_fields, item_of
from dualsaver.errors import CopyFailed
from dualsaver.saver._plans import missed
from dualsaver.saver._store_plans import item_mark
from dualsaver.checker.findings import ITEM_MISSING_IN_NEW, ITEM_VALUE_MISMATCH
from dualsaver.items import abackfill_items, aopen_item_store, backfill_items, check_items, open_item_store

LOSSY = {"score": float("nan"), "best": [1.0, float("inf")]}


def _url(kind, request, tmp_path):
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/target.sqlite"
    return request.getfixturevalue("pg_url")


def test_the_bare_stores_cannot_hold_nan(request, tmp_path):
    """The rules' reason, measured without dualsaver: SqliteStore keeps null where NaN and
    Infinity were, quietly; PostgresStore's JSONB refuses them. (dualsaver's own writers
    encode with orjson, which would write null for both: hence the refusal.)"""
    with open_item_store(_url("sqlite", request, tmp_path)) as store:
        store.put(("u",), "k", LOSSY)
        assert store.get(("u",), "k").value == {"score": None, "best": [1.0, None]}
    with open_item_store(_url("postgres", request, tmp_path)) as store, pytest.raises(Exception, match="NaN"):
        store.put(("u",), "k", LOSSY)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_backfill_refuses_an_item_the_target_would_change_unless_accepted(kind, request, tmp_path):
    url = _url(kind, request, tmp_path)
    with open_item_store("memory://") as old, open_item_store(url) as new:
        old.put(("team", "a"), "lossy", LOSSY)
        old.put(("team", "a"), "plain", {"score": 0.5})
        result = backfill_items(old, new, state_path=":memory:")
        assert (result.items, result.bad, result.refused) == (1, 1, 1)
        assert "1 bad item(s) (1 refused: values the target cannot hold)" in result.summary()
        bad = result.bad_items[0]
        assert (bad["namespace"], bad["key"], bad["rule"]) == (["team", "a"], "lossy", f"{kind}.item-non-finite")
        assert "NaN or Infinity at $.score" in bad["error"] and "--allow-lossy non-finite" in bad["error"]
        assert new.get(("team", "a"), "lossy") is None
        assert [(d.kind, d.checkpoint_id) for d in check_items(old, new).divergences] == [
            (ITEM_MISSING_IN_NEW, "lossy")]

        accepted = backfill_items(old, new, state_path=":memory:", allow_lossy="non-finite")
        assert (accepted.items, accepted.bad) == (1, 0)
        assert any("accepted as lossy: non-finite" in note for note in accepted.notes)
        assert new.get(("team", "a"), "lossy").value == {"score": None, "best": [1.0, None]}
        # what was accepted is still a difference, and the check still says so
        assert [(d.kind, d.checkpoint_id) for d in check_items(old, new).divergences] == [
            (ITEM_VALUE_MISMATCH, "lossy")]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_the_async_backfill_refuses_and_accepts_alike(kind, request, tmp_path):
    url = _url(kind, request, tmp_path)
    async with aopen_item_store("memory://") as old, aopen_item_store(url) as new:
        await old.aput(("team", "a"), "lossy", LOSSY)
        refused = await abackfill_items(old, new, state_path=":memory:")
        accepted = await abackfill_items(old, new, state_path=":memory:", allow_lossy=["non-finite"])
        assert (refused.items, refused.bad, refused.bad_items[0]["rule"]) == (0, 1, f"{kind}.item-non-finite")
        assert (accepted.items, accepted.bad) == (1, 0)
        assert (await new.aget(("team", "a"), "lossy")).value == {"score": None, "best": [1.0, None]}


def test_an_unknown_lossy_class_is_refused_before_anything_is_copied(tmp_path):
    with open_item_store("memory://") as old, open_item_store(f"sqlite:///{tmp_path}/t.sqlite") as new:
        old.put(("u",), "k", {"a": 1})
        with pytest.raises(ValueError, match="unknown lossy class"):
            backfill_items(old, new, state_path=":memory:", allow_lossy="nan")
        assert new.get(("u",), "k") is None


def _pending(path):
    journal = Journal(path)
    try:
        return list(journal.pending())
    finally:
        journal.close()


def test_a_live_dual_store_journals_the_item_and_keeps_its_secondary(tmp_path, pg_url):
    """In shadow-write over an in-memory primary (which holds NaN), the secondary refuses that
    item: it is journaled with its rule, the circuit stays closed and the next write lands."""
    with open_item_store("memory://") as old, open_item_store(pg_url) as new:
        store = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        store.put(("u",), "lossy", LOSSY)
        store.put(("u",), "next", {"a": 1})
        assert store.flush(timeout=30)
        assert math.isnan(old.get(("u",), "lossy").value["score"])  # the primary keeps it
        assert new.get(("u",), "lossy") is None and new.get(("u",), "next").value == {"a": 1}
        assert {b.state for b in store.breakers.values()} == {"closed"}
        rows = _pending(tmp_path / "j.sqlite")
        assert [(r.store, item_of(r)) for r in rows] == [("new", (("u",), "lossy"))]
        assert "postgres.item-non-finite" in rows[0].error
        store.close()


def test_the_cli_store_backfill_refuses_then_accepts_with_allow_lossy(tmp_path, monkeypatch, capsys):
    """`dualsaver backfill --store-old --store-new` passes --allow-lossy through: refused by
    name without it (exit 1, the item not copied), copied by a re-run with it (the refused
    item is not skipped as done), and an unknown class is a usage error (exit 2) before
    anything is copied. In one process: `memory://NAME` is the
    only store that holds NaN, and it lives as long as its process."""
    import json

    from dualsaver.cli import main

    monkeypatch.chdir(tmp_path)  # no settings file of the repository's
    for name in ("DUALSAVER_OLD_URL", "DUALSAVER_NEW_URL", "DUALSAVER_CONTROL_URL"):
        monkeypatch.delenv(name, raising=False)
    with open_item_store("memory://cli-lossy") as old:
        old.put(("team", "a"), "lossy", LOSSY)
    target = f"sqlite:///{tmp_path}/target.sqlite"
    argv = ["backfill", "--store-old", "memory://cli-lossy", "--store-new", target, "--state", str(tmp_path / "s"),
            "--json"]

    assert main([*argv, "--allow-lossy", "nan"]) == 2
    assert "unknown lossy class" in capsys.readouterr().err
    assert main(argv) == 1
    refused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["store"]
    assert (refused["items"], refused["bad"]) == (0, 1)
    with open_item_store(target) as new:
        assert new.get(("team", "a"), "lossy") is None

    assert main([*argv, "--allow-lossy", "non-finite"]) == 0
    accepted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["store"]
    assert (accepted["items"], accepted["bad"]) == (1, 0)
    with open_item_store(target) as new:
        assert new.get(("team", "a"), "lossy").value == {"score": None, "best": [1.0, None]}


def _journaled(path):
    return [(r.store, r.operation, item_of(r)) for r in _pending(path)]


def test_a_batch_with_one_refused_item_journals_that_item_only(tmp_path, pg_url):
    """One batch, three writes; new refuses one: the other two land in new, so the journal
    names the refused item alone (a repair of the journal redoes what did not land)."""
    with open_item_store("memory://") as old, open_item_store(pg_url) as new:
        store = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite")
        store.batch([PutOp(("u",), "before", {"a": 1}), PutOp(("u",), "lossy", LOSSY),
                     PutOp(("u",), "after", {"b": 2})])
        assert store.flush(timeout=30)
        store.close()
        assert [new.get(("u",), k) is not None for k in ("before", "lossy", "after")] == [True, False, True]
    assert _journaled(tmp_path / "j.sqlite") == [("new", "store.put", (("u",), "lossy"))]


async def test_the_async_waiting_dual_store_journals_the_refused_item_only(tmp_path):
    async with aopen_item_store("memory://") as old, aopen_item_store(f"sqlite:///{tmp_path}/t.sqlite") as new:
        store = DualStore(old, new, Phase.SHADOW_WRITE, journal=tmp_path / "j.sqlite", write_behind=False)
        await store.abatch([PutOp(("u",), "lossy", LOSSY), PutOp(("u",), "plain", {"a": 1})])
        await store.aclose()
        assert (await new.aget(("u",), "plain")).value == {"a": 1}
        assert await new.aget(("u",), "lossy") is None
    assert _journaled(tmp_path / "j.sqlite") == [("new", "store.put", (("u",), "lossy"))]


def test_a_copy_that_does_not_name_its_bad_items_journals_every_item_of_the_batch():
    """`missed` keeps only the marks a partial copy names, and all of them when it names
    none of them or cannot name them all (`not_copied` None)."""
    marks = tuple(item_mark(PutOp(("u",), key, {})) for key in ("a", "b", "c"))
    named = CopyFailed("1 item(s) not copied", not_copied=[item_entry_fields(("u",), "b")])
    assert [m.where["checkpoint_id"] for m in missed("new", marks, named, Phase.SHADOW_WRITE)] == ["b"]
    for unnamed in (CopyFailed("1001 item(s) not copied"), CopyFailed("x", not_copied=[item_entry_fields(("v",), "b")]),
                    RuntimeError("down")):
        assert [m.where["checkpoint_id"] for m in missed("new", marks, unnamed, Phase.SHADOW_WRITE)] == ["a", "b", "c"]


def test_a_copy_with_more_bad_items_than_it_lists_still_tells_a_refusal_from_a_failure():
    """The result keeps the first thousand bad items; whether all were refused by a rule
    (the target answered: its circuit stays closed) is counted, not read from that list."""
    from dualsaver.items import ItemBackfillResult
    from dualsaver.saver._item_copy import _copied

    listed = [{"namespace": ["u"], "key": f"k{i}", "error": "LossyValue", "rule": "postgres.item-non-finite"}
              for i in range(1000)]
    for refused, expected in ((1500, True), (1499, False)):
        with pytest.raises(CopyFailed) as failed:
            _copied(ItemBackfillResult(bad=1500, refused=refused, bad_items=listed))
        assert (failed.value.refused, failed.value.not_copied) == (expected, None)
