"""The check's byte path (`dualsaver.checker._bytes`): where both stores use the same serializer
it compares stored bytes first, and it reaches the verdict the decoded path reaches, kind for
kind: on planted divergences, on random histories, and where the same value is encoded two
ways (different bytes, no divergence)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import ormsgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualsaver.checker import acheck, check
from dualsaver.stores import aopen_saver, native_for, open_saver
from dualsaver.stores.native import NOT_DECODED, StoredCheckpoint, StoredWrite
from tests import check_support as cs
from tests.test_check import PLANTS, THREADS, identities, plant, sqlite_url

SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def verdicts(old, new) -> tuple[object, object]:
    return check(old, new, backoff=(0,)), check(old, new, backoff=(0,), compare="decoded")


# --------------------------------------------------------------------------- planted, SQLite pair


@pytest.fixture(scope="module")
def same_pair(tmp_path_factory) -> tuple[Path, Path, list[tuple[str, int]]]:
    """old.sqlite and new.sqlite, identical, one serializer configuration; every (thread, row)."""
    root = tmp_path_factory.mktemp("same")
    with open_saver(sqlite_url(root / "old.sqlite")) as old, open_saver(sqlite_url(root / "new.sqlite")) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        report = check(old, new)
        assert report.clean and report.summary["compared"] == {"by_bytes": len(THREADS), "decoded": 0}
        rows = [(t, i) for t in THREADS for i in range(len(cs.items(old, t)))]
    return root / "old.sqlite", root / "new.sqlite", rows


@settings(SLOW, max_examples=15)
@given(data=st.data())
def test_planted_divergences_found_by_the_byte_path_with_their_kind(same_pair, tmp_path, data):
    old_file, new_file, rows = same_pair
    chosen = data.draw(st.lists(st.sampled_from(range(len(rows))), unique=True, max_size=5), label="rows")
    row_plants = [
        (*rows[n], *data.draw(st.sampled_from(PLANTS)), data.draw(st.sampled_from(["old", "new"])))
        for n in chosen
    ]
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    paths = {"old": work / "old.sqlite", "new": work / "new.sqlite"}
    shutil.copy(old_file, paths["old"])
    shutil.copy(new_file, paths["new"])
    with open_saver(sqlite_url(paths["old"])) as old, open_saver(sqlite_url(paths["new"])) as new:
        expected = plant(old, new, paths, row_plants)
        by_bytes, decoded = verdicts(old, new)
    assert identities(by_bytes) == identities(decoded) == expected, by_bytes.to_json()
    assert [d.to_dict() for d in by_bytes.divergences] == [d.to_dict() for d in decoded.divergences]
    touched = {t for t, *_ in row_plants}
    assert by_bytes.summary["compared"]["by_bytes"] == len(set(THREADS) - touched)  # the rest decoded


# --------------------------------------------------------------------------- random histories, SQLite vs PostgreSQL

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8), st.binary(max_size=8),
)
value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abcde", min_size=1, max_size=3), inner, max_size=3),
    max_leaves=8,
)
CHANNELS = ("a", "b", "c")
# What the new store gets instead of the old store's row.
EDITS = ("same", "same", "reordered", "value", "write", "metadata", "missing", "extra")


def reordered(v):
    """The same value encoded otherwise: every dict's keys in reverse order (equal in Python,
    other bytes in msgpack)."""
    if isinstance(v, dict):
        return {k: reordered(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [reordered(x) for x in v]
    return v


def record(thread: str, n: int, values: dict, writes: list, step: int = 0) -> StoredCheckpoint:
    cp: dict = {"v": 4, "updated_channels": None}
    checkpoint_id = f"1ef{n:05d}-0000-6000-8000-000000000000"
    cp.update(
        id=checkpoint_id, ts="2026-01-01T00:00:00+00:00", channel_values=values,
        channel_versions=dict.fromkeys(values, f"{n:032d}.0.1"), versions_seen={"node": dict.fromkeys(values, n)},
    )
    parent = f"1ef{n - 1:05d}-0000-6000-8000-000000000000" if n else None
    return StoredCheckpoint(
        thread, "", checkpoint_id, parent, cp, {"source": "loop", "step": step, "parents": {}},
        tuple(StoredWrite("task", "~", i, "a", w) for i, w in enumerate(writes)),
    )


@st.composite
def histories(draw):
    """(old rows, new rows): a random history and the new store's copy, row by row edited."""
    old_rows, new_rows = [], []
    for thread in ("h0", "h1"):
        for n in range(draw(st.integers(1, 3))):
            values = draw(st.dictionaries(st.sampled_from(CHANNELS), value, max_size=3))
            writes = draw(st.lists(value, max_size=2))
            row = record(thread, n, values, writes)
            old_rows.append(row)
            edit = draw(st.sampled_from(EDITS))
            if edit == "reordered":
                new_rows.append(record(thread, n, reordered(values), [reordered(w) for w in writes]))
            elif edit == "value":
                new_rows.append(record(thread, n, {**values, "c": ["changed", draw(value)]}, writes))
            elif edit == "write":
                new_rows.append(record(thread, n, values, [*writes, "another"]))
            elif edit == "metadata":
                new_rows.append(record(thread, n, values, writes, step=7))
            elif edit == "extra":
                new_rows += [row, record(thread, n + 50, values, writes)]
            elif edit != "missing":
                new_rows.append(row)
    return old_rows, new_rows


# dualsaver's Redis saver: every value a blob; an encrypted store: compared by its plaintext
@pytest.mark.parametrize("target, serde", [("pg_url", None), ("redis_url", None), ("pg_url", "encrypted")])
@settings(SLOW, max_examples=30)
@given(history=histories())
def test_byte_path_and_decoded_path_give_the_same_verdict(request, target, serde, tmp_path, history):
    old_rows, new_rows = history
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "old.sqlite"
    new_serde = cs.encrypted_serde() if serde else None
    with open_saver(sqlite_url(path)) as old, open_saver(request.getfixturevalue(target), serde=new_serde) as new:
        for t in ("h0", "h1"):
            new.delete_thread(t)
        native_for(old).write_checkpoints(old_rows)
        if new_rows:
            native_for(new).write_checkpoints(new_rows)
        by_bytes, decoded = verdicts(old, new)
    assert [d.to_dict() for d in by_bytes.divergences] == [d.to_dict() for d in decoded.divergences]
    assert by_bytes.clean == decoded.clean
    assert decoded.summary["compared"]["by_bytes"] == 0


def test_the_same_value_encoded_two_ways_is_no_divergence(pg_url, sqlite_path):
    values = {"a": {"x": 1, "y": [1, 2], "z": {"p": None, "q": "s"}}, "b": "inline"}
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        native_for(old).write_checkpoints([record("t", 0, values, [{"k": 1, "l": 2}])])
        native_for(new).write_checkpoints([record("t", 0, reordered(values), [{"l": 2, "k": 1}])])
        report = check(old, new)
    assert report.clean, report.to_json()
    assert report.summary["compared"] == {"by_bytes": 0, "decoded": 1}  # the bytes differed: decoded


async def test_async_check_compares_bytes_too(pg_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        cs.rewrite_thread(new, "t-b", lambda rows: rows[:-1])
        expected = identities(check(old, new))
    async with aopen_saver(sqlite_url(sqlite_path)) as old, aopen_saver(pg_url) as new:
        report = await acheck(old, new, workers=2)
    assert identities(report) == expected and len(expected) == 1
    assert report.summary["compared"] == {"by_bytes": len(THREADS) - 1, "decoded": 1}


def test_postgres_to_postgres_backfill_passes_blobs_through_and_checks_clean(pg_url_factory):
    # PostgreSQL now reads its blobs as stored bytes (the check's byte path); the backfill
    # takes them too when both sides share a serializer, DeltaChannel snapshots included.
    from dualsaver.migrate import backfill, read_options
    from tests.backfill_support import normalize, run_threads, snapshot_postgres

    old_url, new_url = pg_url_factory(), pg_url_factory()
    with open_saver(old_url) as old, open_saver(new_url) as new:
        run_threads(old, ["p-1", "p-2"], turns=3)
        assert read_options(native_for(old), native_for(new)) == {"encoded": True, "stored_values": True}
        result = backfill(old, new, resume=False)
        assert result.failed == 0 and result.checkpoints > 0
        by_bytes, decoded = verdicts(old, new)
        assert by_bytes.clean and decoded.clean, decoded.to_json()
        assert by_bytes.summary["compared"] == {"by_bytes": 2, "decoded": 0}
    serde = new.serde
    assert normalize(snapshot_postgres(new_url, serde)) == normalize(snapshot_postgres(old_url, serde))


# --------------------------------------------------------------------------- encrypted stores


ENCRYPTED_PAIRS = {  # (old's serializer, new's): plain to encrypted, and under two keys
    "plain->encrypted": (lambda: None, cs.encrypted_serde),
    "two keys": (lambda: cs.encrypted_serde(b"fedcba9876543210"), cs.encrypted_serde),
}


@pytest.mark.parametrize("pair", ENCRYPTED_PAIRS)
def test_an_encrypted_store_is_compared_by_its_decrypted_bytes(pair, pg_url, sqlite_path):
    from dualsaver.stores import serde

    old_serde, new_serde = (make() for make in ENCRYPTED_PAIRS[pair])
    with open_saver(sqlite_url(sqlite_path), serde=old_serde) as old, open_saver(pg_url, serde=new_serde) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        stored = {r["type"] for r in native_for(new).query("SELECT DISTINCT type FROM checkpoint_writes", ())}
        assert "msgpack+aes" in stored and not any("+" not in t for t in stored)  # all encrypted
        report = check(old, new)
        assert report.clean and report.summary["compared"] == {"by_bytes": len(THREADS), "decoded": 0}
        assert not serde._opened  # the plaintexts it kept do not outlive the check
        cs.rewrite_thread(new, "t-b", lambda rows: rows[:-1])
        by_bytes, decoded = verdicts(old, new)
    assert [d.to_dict() for d in by_bytes.divergences] == [d.to_dict() for d in decoded.divergences]
    assert {d.kind for d in by_bytes.divergences} == {"missing_in_new"}
    assert by_bytes.summary["compared"] == {"by_bytes": len(THREADS) - 1, "decoded": 1}


def test_a_tampered_ciphertext_is_reported_as_the_decoded_path_reports_it(pg_url, sqlite_path):
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url, serde=cs.encrypted_serde()) as new:
        cs.populate(old, THREADS)
        cs.clone(old, new)
        row = next(r for r in cs.items(new, "t-c") if r.writes)
        cs.tamper_postgres_writes(pg_url, "t-c", row.checkpoint_ns, row.checkpoint_id)
        by_bytes, decoded = verdicts(old, new)
    assert [d.to_dict() for d in by_bytes.divergences] == [d.to_dict() for d in decoded.divergences]
    assert {(d.kind, d.thread_id) for d in by_bytes.divergences} == {("unreadable", "t-c")}
    assert by_bytes.summary["compared"] == {"by_bytes": len(THREADS) - 1, "decoded": 1}


class Counting:
    """A cipher that counts its decryptions."""

    def __init__(self, cipher) -> None:
        self.cipher, self.decrypted = cipher, 0

    def encrypt(self, plaintext: bytes):
        return self.cipher.encrypt(plaintext)

    def decrypt(self, name: str, ciphertext: bytes) -> bytes:
        self.decrypted += 1
        return self.cipher.decrypt(name, ciphertext)


def test_ciphertext_two_stores_share_is_decrypted_once():
    # a backfill between stores under one key copies ciphertext as it is: the check's second
    # store finds what the first one decrypted
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    from dualsaver.stores.serde import plaintext

    one, two = (Counting(cs.encrypted_serde().cipher) for _ in range(2))
    other = Counting(cs.encrypted_serde(b"fedcba9876543210").cipher)  # another key: another class
    opened = {c: plaintext(EncryptedSerializer(c)) for c in (one, two, other)}
    for c in opened:
        c.decrypted = 0  # the probes that sorted the ciphers into classes
    writer = cs.encrypted_serde()
    typed = writer.dumps_typed({"a": [1, 2, 3]})
    expected = ("msgpack", writer.serde.dumps_typed({"a": [1, 2, 3]})[1])
    assert opened[one].open(typed) == expected and one.decrypted == 1
    assert opened[two].open(typed) == expected and two.decrypted == 0  # the same ciphertext: found
    again = writer.dumps_typed({"a": [1, 2, 3]})  # a new nonce: other ciphertext, decrypted
    assert opened[two].open(again) == expected and two.decrypted == 1
    with pytest.raises(ValueError):
        opened[other].open(typed)  # never served what a cipher of another class decrypted
    tag, data = typed
    with pytest.raises(ValueError):
        opened[two].open((tag, data[:-1] + bytes([data[-1] ^ 1])))  # tampered: its own bytes, decrypted
    assert two.decrypted == 2


# --------------------------------------------------------------------------- a set in a pending write


def set_bytes(members) -> bytes:
    """A set as JsonPlusSerializer writes it (extension 0: module, name, members), its members
    in the order given: the order the writing process iterated them, which varies."""
    return ormsgpack.packb(ormsgpack.Ext(0, ormsgpack.packb(("builtins", "set", list(members)))))


def with_set_write(row: StoredCheckpoint, members, encoding) -> StoredCheckpoint:
    write = StoredWrite("task", "~", 0, "tags", NOT_DECODED, ("msgpack", set_bytes(members)))
    return dataclasses.replace(row, writes=(write,), encoding=encoding)


def test_a_set_in_a_write_whose_members_the_stores_order_otherwise_is_settled_by_its_bytes(pg_url, sqlite_path):
    # a copy that decodes a set and encodes it again (another process, another saver) may
    # write its members in another order: the same value, which the byte path sorts
    with open_saver(sqlite_url(sqlite_path)) as old, open_saver(pg_url) as new:
        encoding = native_for(old).serde_key
        row = record("t", 0, {"a": [1, 2]}, [])
        native_for(old).write_checkpoints([with_set_write(row, ["plan", "n3"], encoding)])
        native_for(new).write_checkpoints([with_set_write(row, ["n3", "plan"], encoding)])
        report = check(old, new)
    assert report.clean and report.summary["compared"] == {"by_bytes": 1, "decoded": 0}, report.to_json()
