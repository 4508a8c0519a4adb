"""The check over real stores: clean is clean, every planted divergence is found with its kind
and nothing else is, corrupted rows are `unreadable`, shards partition, sync == async."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualsaver.checker import acheck, check
from dualsaver.checker.findings import KINDS
from dualsaver.stores import aopen_saver, native_for, open_saver
from tests import check_support as cs

THREADS = ["t-a", "t-b", "t-c"]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def identities(report) -> set[tuple[str, str, str, str]]:
    return {d.identity for d in report.divergences}


# --------------------------------------------------------------------------- clean pairs


def test_clean_across_backends_and_serializers(pg_url, sqlite_path):
    # old: SQLite with the default serializer; new: PostgreSQL with an encrypted one.
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(
        pg_url, serde=cs.encrypted_serde()
    ) as new:
        cs.populate(old, THREADS, turns=2)
        cs.clone(old, new)
        report = check(old, new)
        assert report.clean, report.to_json()
        s = report.summary
        assert s["threads_compared"] == len(THREADS)
        assert s["checkpoints_compared"] == s["checkpoints_old"] == s["checkpoints_new"] > 0
        assert s["writes_old"] == s["writes_new"] > 0
        assert s["stores"] == {"old": "SqliteSaver", "new": "PostgresSaver"}

        assert check(old, new, workers=3).clean
        shards = [check(old, new, shard=(i, 3)) for i in range(3)]
        assert all(r.clean for r in shards)
        assert sum(r.summary["threads_compared"] for r in shards) == len(THREADS)


def test_a_store_read_with_the_wrong_serializer_is_unreadable(pg_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(
        pg_url, serde=cs.encrypted_serde()
    ) as new:
        cs.populate(old, THREADS[:1])
        cs.clone(old, new)
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as plain_new:
        report = check(old, plain_new, backoff=(0,))
    assert not report.clean
    assert {d.kind for d in report.divergences} == {"unreadable"}
    assert {d.detail["side"] for d in report.divergences} == {"new"}


# --------------------------------------------------------------------------- planted


@pytest.fixture(scope="module")
def base_pair(tmp_path_factory) -> tuple[Path, Path, list[tuple[str, int]]]:
    """old.sqlite (plain) and new.sqlite (encrypted), identical; and every (thread, row)."""
    root = tmp_path_factory.mktemp("pair")
    with open_saver(sqlite_url(root / "old.sqlite")) as old, open_saver(
        sqlite_url(root / "new.sqlite"), serde=cs.encrypted_serde()
    ) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        assert check(old, new).clean
        rows = [(t, i) for t in THREADS for i in range(len(cs.items(old, t)))]
    return root / "old.sqlite", root / "new.sqlite", rows


PLANTS = [
    ("missing_in_new", None),
    ("missing_in_old", None),
    ("missing_in_old", "extra"),
    ("checkpoint_mismatch", "value"),
    ("checkpoint_mismatch", "versions_seen"),
    ("checkpoint_mismatch", "parent"),
    ("metadata_mismatch", None),
    ("writes_mismatch", "add"),
    ("writes_mismatch", "value"),
    ("writes_mismatch", "drop"),
    ("unreadable", None),
]


def plant(old, new, paths, row_plants):
    """Apply [(thread, row index, kind, variant, side)]; return the expected identities."""
    expected = set()
    edits: dict[tuple[str, str], dict[int, tuple[str, str | None]]] = {}
    corrupt = []
    for thread, i, kind, variant, side in row_plants:
        if kind == "missing_in_new":
            side = "new"
        elif kind == "missing_in_old":
            side = "new" if variant == "extra" else "old"
        row = cs.items(old, thread)[i]
        key = (row.checkpoint_ns, row.checkpoint_id)
        if variant == "extra":
            key = (row.checkpoint_ns, cs.extra_checkpoint(row).checkpoint_id)
        expected.add((kind, thread, *key))
        if kind == "unreadable":
            corrupt.append((side, thread, row))
        else:
            edits.setdefault((side, thread), {})[i] = (kind, variant)
    savers = {"old": old, "new": new}
    for (side, thread), by_row in edits.items():

        def transform(rows, by_row=by_row):
            out = []
            for i, row in enumerate(rows):
                kind, variant = by_row.get(i, (None, None))
                if kind in ("missing_in_new", "missing_in_old") and variant != "extra":
                    continue
                if variant == "extra":
                    out.append(cs.extra_checkpoint(row))
                elif kind == "checkpoint_mismatch":
                    row = cs.with_checkpoint(row, variant)
                elif kind == "metadata_mismatch":
                    row = cs.with_metadata(row)
                elif kind == "writes_mismatch":
                    row = cs.with_writes(row, variant)
                out.append(row)
            return out

        cs.rewrite_thread(savers[side], thread, transform)
    for side, thread, row in corrupt:
        cs.corrupt_sqlite(str(paths[side]), thread, row.checkpoint_ns, row.checkpoint_id)
    return expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_planted_divergences_are_found_with_their_kind_and_nothing_else(
    base_pair, tmp_path, data
):
    old_file, new_file, rows = base_pair
    chosen = data.draw(
        st.lists(st.sampled_from(range(len(rows))), unique=True, max_size=6), label="rows"
    )
    row_plants = [
        (*rows[n], *data.draw(st.sampled_from(PLANTS)), data.draw(st.sampled_from(["old", "new"])))
        for n in chosen
    ]
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # tmp_path is shared by the examples
    paths = {"old": work / "old.sqlite", "new": work / "new.sqlite"}
    shutil.copy(old_file, paths["old"])
    shutil.copy(new_file, paths["new"])
    with open_saver(sqlite_url(paths["old"])) as old, open_saver(
        sqlite_url(paths["new"]), serde=cs.encrypted_serde()
    ) as new:
        expected = plant(old, new, paths, row_plants)
        report = check(old, new, backoff=(0,), workers=2)
    assert identities(report) == expected, report.to_json()
    assert report.clean == (not expected)
    assert sum(report.summary["counts"].values()) == len(expected)


def test_every_kind_with_field_level_detail(base_pair, tmp_path):
    old_file, new_file, rows = base_pair
    paths = {"old": tmp_path / "old.sqlite", "new": tmp_path / "new.sqlite"}
    shutil.copy(old_file, paths["old"])
    shutil.copy(new_file, paths["new"])
    # one plant of each kind, on distinct rows of thread t-b (rows 1..6)
    plants = [
        ("t-b", 1, "missing_in_new", None, "new"),
        ("t-b", 2, "missing_in_old", None, "old"),
        ("t-b", 3, "checkpoint_mismatch", "value", "new"),
        ("t-b", 4, "metadata_mismatch", None, "new"),
        ("t-b", 5, "writes_mismatch", "value", "new"),
        ("t-b", 6, "unreadable", None, "old"),
    ]
    with open_saver(sqlite_url(paths["old"])) as old, open_saver(
        sqlite_url(paths["new"]), serde=cs.encrypted_serde()
    ) as new:
        expected = plant(old, new, paths, plants)
        report = check(old, new, backoff=(0,))
        shown = check(old, new, backoff=(0,), show_values=True)
    assert identities(report) == expected
    assert report.counts() == dict.fromkeys(KINDS, 1)
    by_kind = {d.kind: d for d in report.divergences}
    mismatch = by_kind["checkpoint_mismatch"].detail["fields"]
    value_field = next(f for f in mismatch if f["field"] == "channel_values.summary")
    assert value_field["old"] != value_field["new"]
    assert value_field["new"].startswith("sha256:") and "old_value" not in value_field
    assert [f["field"] for f in by_kind["metadata_mismatch"].detail["fields"]] == [
        "metadata.planted"
    ]
    writes = by_kind["writes_mismatch"].detail
    assert writes["difference"] == "content" and writes["compared"].startswith("exact")
    assert by_kind["unreadable"].detail["side"] == "old"
    assert by_kind["missing_in_new"].detail["present_in"] == "old"
    # --show-values: the values themselves, in canonical (JSON-able) form
    shown_mismatch = {d.kind: d for d in shown.divergences}["checkpoint_mismatch"]
    shown_field = next(
        f for f in shown_mismatch.detail["fields"] if f["field"] == "channel_values.summary"
    )
    assert shown_field["new_value"] == "planted"
    assert '"planted"' not in report.to_json()  # digests only unless asked
    assert '"planted"' in shown.to_json()


def test_writes_order_difference_is_a_writes_mismatch(base_pair, tmp_path):
    old_file, new_file, rows = base_pair
    paths = {"old": tmp_path / "old.sqlite", "new": tmp_path / "new.sqlite"}
    shutil.copy(old_file, paths["old"])
    shutil.copy(new_file, paths["new"])
    with open_saver(sqlite_url(paths["old"])) as old, open_saver(
        sqlite_url(paths["new"]), serde=cs.encrypted_serde()
    ) as new:
        # the checkpoint where the parallel branches wrote `results`
        target = next(
            r for r in cs.items(new, "t-a") if sum(w.channel == "results" for w in r.writes) >= 2
        )

        def swap(rows):
            out = []
            for r in rows:
                if r.checkpoint_id == target.checkpoint_id:
                    ws = list(r.writes)
                    i, j = [n for n, w in enumerate(ws) if w.channel == "results"][:2]
                    assert ws[i].task_path != ws[j].task_path
                    # swap the two branches' task paths: same writes, other replay order
                    ws[i], ws[j] = (
                        cs.dataclasses.replace(ws[i], task_path=ws[j].task_path),
                        cs.dataclasses.replace(ws[j], task_path=ws[i].task_path),
                    )
                    r = cs.dataclasses.replace(r, writes=tuple(ws))
                out.append(r)
            return out

        cs.rewrite_thread(new, "t-a", swap)
        report = check(old, new, backoff=(0,))
    assert [(d.kind, d.checkpoint_id) for d in report.divergences] == [
        ("writes_mismatch", target.checkpoint_id)
    ]
    assert report.divergences[0].detail["difference"] == "order"


# --------------------------------------------------------------------------- unreadable


def test_corrupted_rows_are_unreadable_never_a_crash(pg_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        a = cs.items(old, "t-a")[3]
        b = next(r for r in cs.items(new, "t-b") if r.writes)
        cs.corrupt_sqlite(str(sqlite_path), "t-a", a.checkpoint_ns, a.checkpoint_id)
        cs.corrupt_postgres_writes(pg_url, "t-b", b.checkpoint_ns, b.checkpoint_id)
        report = check(old, new, backoff=(0,))
    assert identities(report) == {
        ("unreadable", "t-a", a.checkpoint_ns, a.checkpoint_id),
        ("unreadable", "t-b", b.checkpoint_ns, b.checkpoint_id),
    }
    sides = {d.thread_id: d.detail["side"] for d in report.divergences}
    assert sides == {"t-a": "old", "t-b": "new"}


# --------------------------------------------------------------------------- sync == async


async def test_async_check_reports_what_the_sync_check_reports(pg_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        rows = cs.items(new, "t-c")
        cs.rewrite_thread(new, "t-c", lambda rs: [cs.with_metadata(rs[0]), *rs[2:]])
        cs.rewrite_thread(old, "t-a", lambda rs: rs[1:])
        sync_report = check(old, new, backoff=(0,), thread_ids=THREADS)
    async with aopen_saver(sqlite_url(sqlite_path)) as aold, aopen_saver(pg_url) as anew:
        async_report = await acheck(aold, anew, backoff=(0,), workers=2)
        sharded = [await acheck(aold, anew, backoff=(0,), shard=(i, 2)) for i in range(2)]
    assert identities(async_report) == identities(sync_report)
    assert {d.kind for d in sync_report.divergences} == {
        "metadata_mismatch",
        "missing_in_new",
        "missing_in_old",
    }
    assert ("missing_in_new", "t-c", rows[1].checkpoint_ns, rows[1].checkpoint_id) in identities(
        async_report
    )
    assert set().union(*(identities(r) for r in sharded)) == identities(sync_report)


def test_native_stores_and_progress(sqlite_path, tmp_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(
        sqlite_url(tmp_path / "new.sqlite")
    ) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        seen = []
        report = check(native_for(old), native_for(new), progress=seen.append)
    assert report.clean
    assert [p.threads for p in seen] == [1, 2, 3]
    assert all(p.phase == "scan" for p in seen)


# --------------------------------------------------------------------------- inexact adapters


def _row(writes) -> cs.StoredCheckpoint:
    from dualsaver.stores.native import StoredCheckpoint, StoredWrite

    return StoredCheckpoint(
        "t", "", "cp-1", None,
        {"v": 4, "id": "cp-1", "ts": "2026", "channel_values": {}, "channel_versions": {},
         "versions_seen": {}, "updated_channels": None},
        {"step": 1},
        tuple(StoredWrite(*w) for w in writes),
    )


def test_an_inexact_side_compares_what_it_can_and_says_so():
    from dualsaver.checker._diff import ThreadSide, diff_thread

    exact = [("task-b", "~path-1", 0, "results", "B"), ("task-a", "~path-2", 0, "results", "A")]
    lost_paths = [("task-b", "", 0, "results", "B"), ("task-a", "", 1, "results", "A")]

    def diff(a, b, old_exact=True, new_exact=True):
        old, new = ThreadSide(), ThreadSide()
        old.add(_row(a))
        new.add(_row(b))
        return diff_thread("t", old, new, old_exact=old_exact, new_exact=new_exact).divergences

    # through the public API the task paths and indexes are gone: not a divergence...
    assert diff(exact, lost_paths, new_exact=False) == []
    # ...but between exact adapters it is: the branches would replay in another order
    [d] = diff(exact, lost_paths)
    assert d.kind == "writes_mismatch" and d.detail["difference"] == "order"
    # an inexact side still sees content, and the detail says what was compared
    [d] = diff(exact, [("task-b", "", 0, "results", "B"), ("task-a", "", 0, "results", "Z")],
               old_exact=False)
    assert d.detail["difference"] == "content"
    assert "old store adapter is not exact" in d.detail["compared"]
