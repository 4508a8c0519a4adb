"""The backfill copies exactly, idempotently, beside live traffic, across serializers.

Exactness is judged by independent snapshots (plain sqlite3 / psycopg reads of each store's
tables, decoded with each store's serializer) and by what real graphs read back.
"""

from __future__ import annotations

import threading

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from dualsaver.migrate import abackfill, acopy_thread, backfill, copy_thread
from dualsaver.stores import aopen_saver, in_shard, native_for, open_saver
from tests.backfill_support import (
    OpaqueSaver,
    ShadowWriter,
    arun_threads,
    build_graph,
    normalize,
    run_threads,
    snapshot_postgres,
    snapshot_sqlite,
)

THREADS = [f"thread-{i:02d}" for i in range(6)]
KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def state(tmp_path):
    return tmp_path / "progress.sqlite"


def _graph_views(saver, thread_ids):
    """What an application sees: state (DeltaChannel rebuilt from writes), history, tasks."""
    graph = build_graph(saver)
    views = {}
    for t in thread_ids:
        config = {"configurable": {"thread_id": t}}
        snap = graph.get_state(config, subgraphs=True)
        history = [(h.values, h.next, h.metadata, h.parent_config, [(x.name, x.interrupts) for x in h.tasks])
                   for h in graph.get_state_history(config)]
        views[t] = (snap.values, snap.next, [x.interrupts for x in snap.tasks], history)
    return views


def test_sqlite_to_postgres_is_exact_and_reruns_change_nothing(sqlite_path, pg_url, state) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(pg_url) as new:
        run_threads(old, THREADS, turns=2)
        source = normalize(snapshot_sqlite(str(sqlite_path), old.serde))
        result = backfill(old, new, state_path=state)
        assert result.exact and result.failed == 0 and result.unreadable == 0
        assert result.threads == len(THREADS) and result.checkpoints == len(source)
        assert result.writes == sum(len(v[3]) for v in source.values())
        copied = normalize(snapshot_postgres(pg_url, new.serde))
        assert copied == source
        assert any(ns.startswith("sub:") for (_, ns, _) in copied)  # subgraph namespaces came too
        assert _graph_views(new, THREADS) == _graph_views(old, THREADS)

        again = backfill(old, new, state_path=state)  # resume: nothing left to do
        assert (again.threads, again.threads_resumed, again.checkpoints) == (0, len(THREADS), 0)
        redo = backfill(old, new, state_path=state, resume=False, workers=3)  # --restart
        assert (redo.checkpoints, redo.writes, redo.skipped) == (0, 0, len(source))
        assert normalize(snapshot_postgres(pg_url, new.serde)) == source


def test_postgres_to_sqlite_is_exact(sqlite_path, pg_url, state) -> None:
    with open_saver(pg_url) as old, open_saver(f"sqlite:///{sqlite_path}") as new:
        run_threads(old, THREADS[:4], turns=2)
        result = backfill(old, new, state_path=state, workers=2)
        assert result.exact and result.failed == 0
        source = normalize(snapshot_postgres(pg_url, old.serde))
        assert normalize(snapshot_sqlite(str(sqlite_path), new.serde)) == source
        assert _graph_views(new, THREADS[:4]) == _graph_views(old, THREADS[:4])


async def test_async_backfill_makes_the_same_copy(tmp_path, pg_url, state) -> None:
    async with aopen_saver(f"sqlite:///{tmp_path}/old.sqlite") as old, aopen_saver(pg_url) as new:
        await arun_threads(old, THREADS[:3], turns=2)
        result = await abackfill(old, new, state_path=state, workers=2)
        assert result.exact and result.failed == 0 and result.threads == 3
        again = await abackfill(old, new, state_path=state, resume=False)
        assert (again.checkpoints, again.writes) == (0, 0)
        one = await acopy_thread(old, new, THREADS[0])
        assert one.ok and one.checkpoints == 0 and one.skipped == one.read > 0
    with open_saver(f"sqlite:///{tmp_path}/old.sqlite") as old_sync:
        source = normalize(snapshot_sqlite(f"{tmp_path}/old.sqlite", old_sync.serde))
        assert normalize(snapshot_postgres(pg_url, old_sync.serde)) == source


def test_serializer_change_to_encrypted_and_back(sqlite_path, tmp_path, pg_url, state) -> None:
    encrypted = EncryptedSerializer.from_pycryptodome_aes(key=KEY)
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(pg_url, serde=encrypted) as new:
        run_threads(old, THREADS[:3], turns=2)
        assert backfill(old, new, state_path=state).failed == 0
        source = normalize(snapshot_sqlite(str(sqlite_path), old.serde))
        assert normalize(snapshot_postgres(pg_url, encrypted)) == source
        import psycopg

        with psycopg.connect(pg_url) as conn:
            types = {r[0] for r in conn.execute("SELECT type FROM checkpoint_writes UNION SELECT type FROM checkpoint_blobs")}
        assert types and all(t.endswith("+aes") for t in types)  # re-encoded, not copied raw
        assert _graph_views(new, THREADS[:3]) == _graph_views(old, THREADS[:3])

        # and back, from the encrypted store into a plain one
        with open_saver(f"sqlite:///{tmp_path}/back.sqlite") as back:
            assert backfill(new, back, state_path=state).failed == 0
            assert normalize(snapshot_sqlite(f"{tmp_path}/back.sqlite", back.serde)) == source


def test_never_overwrites_what_the_target_holds(sqlite_path, pg_url, state) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(pg_url) as new:
        run_threads(old, THREADS[:2], turns=1)
        first = next(native_for(old).read_thread(THREADS[0]))
        # live traffic already wrote this checkpoint to new, with content of its own
        from dataclasses import replace

        live = replace(first, metadata={**first.metadata, "live": True}, writes=first.writes[:1])
        native_for(new).write_checkpoints([live])
        result = backfill(old, new, state_path=state)
        assert result.skipped == 1 and result.failed == 0
        kept = next(native_for(new).read_thread(THREADS[0]))
        assert kept.metadata["live"] is True  # not overwritten
        assert kept.writes == first.writes  # the missing writes were added, the present one kept


def test_backfill_beside_live_shadow_write_traffic(sqlite_path, pg_url, state, tmp_path) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(pg_url) as new:
        run_threads(old, THREADS, turns=1)  # history new never saw
        dual = ShadowWriter(old, new)  # old first, then new, as shadow-write does
        errors: list[BaseException] = []

        def traffic() -> None:
            try:  # more turns on the same threads, through shadow-write (old first, then new)
                run_threads(dual, THREADS, turns=2, leave_interrupted=False)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        live = threading.Thread(target=traffic)
        live.start()
        first = backfill(old, new, state_path=state, workers=2)
        live.join()
        assert not errors and first.failed == 0
        # threads finished before the traffic moved on are done; copy what traffic added
        # to old before shadow-write reached them, as the operator's second pass would
        backfill(old, new, state_path=state, resume=False)
        assert normalize(snapshot_postgres(pg_url, new.serde)) == normalize(
            snapshot_sqlite(str(sqlite_path), old.serde)
        )


def test_shards_split_the_threads_and_cover_them_all(state) -> None:
    old = InMemorySaver()
    run_threads(old, THREADS, turns=1)
    targets = [InMemorySaver() for _ in range(3)]
    for i, target in enumerate(targets):
        result = backfill(old, target, shard=(i, 3), state_path=state)
        assert result.failed == 0
        assert set(native_for(target).thread_ids()) == {t for t in THREADS if in_shard(t, (i, 3))}
    whole = InMemorySaver()
    for target in targets:
        backfill(target, whole, state_path=state)
    src, dst = native_for(old), native_for(whole)
    assert [list(dst.read_thread(t)) for t in THREADS] == [list(src.read_thread(t)) for t in THREADS]


def test_dry_run_and_thread_filter_and_copy_thread(state) -> None:
    old, new = InMemorySaver(), InMemorySaver()
    run_threads(old, THREADS[:3], turns=1)
    dry = backfill(old, new, dry_run=True, state_path=state)
    assert dry.dry_run and dry.checkpoints > 0 and list(native_for(new).thread_ids()) == []
    only = backfill(old, new, thread_ids=[THREADS[1]], state_path=state)
    assert only.threads == 1 and list(native_for(new).thread_ids()) == [THREADS[1]]
    copied = copy_thread(old, new, THREADS[2])
    assert copied.ok and copied.checkpoints == len(list(native_for(old).read_thread(THREADS[2])))
    assert list(native_for(new).read_thread(THREADS[2])) == list(native_for(old).read_thread(THREADS[2]))


async def test_a_misspelt_keyword_is_refused_before_anything_is_copied(state) -> None:
    old, new = InMemorySaver(), InMemorySaver()
    run_threads(old, THREADS[:1], turns=1)
    with pytest.raises(TypeError, match="dry_rn"):
        backfill(old, new, dry_rn=True, state_path=state)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="dry_rn"):
        await abackfill(old, new, dry_rn=True, state_path=state)  # type: ignore[call-arg]
    assert list(native_for(new).thread_ids()) == []


def test_public_api_copies_are_marked_approximate(state) -> None:
    old = OpaqueSaver()
    run_threads(old, THREADS[:2], turns=1)
    new = InMemorySaver()
    result = backfill(old, new, state_path=state)
    assert result.exact is False and result.failed == 0
    assert any("approximate" in note for note in result.notes) and "APPROXIMATE" in result.summary()
    assert backfill(old, new, state_path=state, resume=False).checkpoints == 0  # still no duplicates


def test_unreadable_rows_fail_the_thread_but_not_the_run(sqlite_path, state) -> None:
    with open_saver(f"sqlite:///{sqlite_path}") as old:
        run_threads(old, THREADS[:2], turns=1)
        victim = old.conn.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? LIMIT 1", (THREADS[0],)
        ).fetchone()[0]
        old.conn.execute("UPDATE checkpoints SET checkpoint = X'C1' WHERE checkpoint_id = ?", (victim,))
        old.conn.commit()
        new = InMemorySaver()
        result = backfill(old, new, state_path=state)
    assert (result.failed, result.unreadable, result.threads) == (1, 1, 2)
    assert result.failures[0][0] == THREADS[0]
    assert list(native_for(new).thread_ids()) == THREADS[:2]  # the readable rows still came


def _typed_writes_sqlite(path) -> dict:
    import sqlite3

    conn = sqlite3.connect(str(path))
    try:
        return {
            r[:5]: (r[5], bytes(r[6]))
            for r in conn.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx, type, value FROM writes"
            )
        }
    finally:
        conn.close()


def _typed_writes_postgres(url) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            r[:5]: (r[5], bytes(r[6]))
            for r in conn.execute(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, idx, type, blob FROM checkpoint_writes"
            )
        }


@pytest.mark.parametrize("same_key", [True, False], ids=["same key", "another key"])
def test_encrypted_to_encrypted_copies_ciphertext_under_the_same_key(sqlite_path, pg_url, state, same_key) -> None:
    """Two stores opened with serializers of their own under one AES key: what one encrypted the
    other decrypts, so the writes' ciphertext is copied as it is (nothing decrypted or
    encrypted); under another key every value is decrypted and encrypted again."""
    from dualsaver.checker import check

    old_serde = EncryptedSerializer.from_pycryptodome_aes(key=KEY)
    new_serde = EncryptedSerializer.from_pycryptodome_aes(key=KEY if same_key else KEY[::-1])
    with open_saver(f"sqlite:///{sqlite_path}", serde=old_serde) as old, open_saver(pg_url, serde=new_serde) as new:
        run_threads(old, THREADS[:3], turns=2)
        assert backfill(old, new, state_path=state).failed == 0
        source, copied = _typed_writes_sqlite(sqlite_path), _typed_writes_postgres(pg_url)
        assert source and source.keys() == copied.keys() and all(t.endswith("+aes") for t, _ in copied.values())
        assert (copied == source) is same_key  # byte for byte, or encrypted again
        assert normalize(snapshot_postgres(pg_url, new_serde)) == normalize(snapshot_sqlite(str(sqlite_path), old_serde))
        assert _graph_views(new, THREADS[:3]) == _graph_views(old, THREADS[:3])
        report = check(old, new)
        assert report.clean and report.summary["compared"] == {"by_bytes": 3, "decoded": 0}, report.to_json()


def test_ciphertext_passing_through_is_checked_as_far_as_it_can_be(sqlite_path, pg_url, state) -> None:
    """A write whose type tag is not one the serializer writes is an unreadable row, never
    copied, though its ciphertext would otherwise pass through undecrypted."""
    serde = EncryptedSerializer.from_pycryptodome_aes(key=KEY)
    with open_saver(f"sqlite:///{sqlite_path}", serde=serde) as old:
        run_threads(old, THREADS[:2], turns=1)
        old.conn.execute("UPDATE writes SET type = 'bogus+aes' WHERE rowid = (SELECT MIN(rowid) FROM writes"
                         " WHERE thread_id = ?)", (THREADS[0],))
        old.conn.commit()
        with open_saver(pg_url, serde=EncryptedSerializer.from_pycryptodome_aes(key=KEY)) as new:
            result = backfill(old, new, state_path=state)
            assert (result.failed, result.unreadable, result.threads) == (1, 1, 2)
            assert result.failures[0][0] == THREADS[0]
            assert list(native_for(new).thread_ids()) == THREADS[:2]  # the readable rows still came


def test_same_serializer_copies_stored_write_bytes_unchanged(sqlite_path, pg_url, state) -> None:
    from dualsaver.migrate import passthrough

    with open_saver(f"sqlite:///{sqlite_path}") as old, open_saver(pg_url) as new:
        run_threads(old, THREADS[:3], turns=2)
        assert passthrough(native_for(old), native_for(new))  # both the default JsonPlus
        assert backfill(old, new, state_path=state).failed == 0
        source = _typed_writes_sqlite(sqlite_path)
        assert source and _typed_writes_postgres(pg_url) == source  # byte for byte
        assert normalize(snapshot_postgres(pg_url, new.serde)) == normalize(
            snapshot_sqlite(str(sqlite_path), old.serde)
        )


def test_serde_keys_match_only_serializers_that_decode_alike() -> None:
    from Crypto.Cipher import AES
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from dualsaver.stores.serde import serde_key

    encrypted = EncryptedSerializer.from_pycryptodome_aes(key=KEY)
    assert serde_key(JsonPlusSerializer()) == serde_key(JsonPlusSerializer()) is not None
    assert serde_key(JsonPlusSerializer()) != serde_key(JsonPlusSerializer(pickle_fallback=True))
    assert serde_key(JsonPlusSerializer(allowed_msgpack_modules=None)) != serde_key(
        JsonPlusSerializer(allowed_msgpack_modules=True)
    )
    assert serde_key(encrypted) == serde_key(encrypted)  # the very same object
    # another serializer under the same key decrypts what this one encrypts, and the other way round
    assert serde_key(encrypted) == serde_key(EncryptedSerializer.from_pycryptodome_aes(key=KEY))
    assert serde_key(encrypted) != serde_key(EncryptedSerializer.from_pycryptodome_aes(key=KEY[::-1]))
    assert serde_key(encrypted) != serde_key(EncryptedSerializer.from_pycryptodome_aes(key=KEY, mode=AES.MODE_GCM))
    assert serde_key(encrypted) != serde_key(EncryptedSerializer(encrypted.cipher, JsonPlusSerializer(pickle_fallback=True)))
    assert serde_key(encrypted) != serde_key(JsonPlusSerializer())

    class Custom(JsonPlusSerializer):
        pass

    assert serde_key(Custom()) != serde_key(JsonPlusSerializer())  # a subclass may encode otherwise


def test_a_write_read_without_decoding_is_never_written_through_another_serializer() -> None:
    from dualsaver.migrate import passthrough

    old, new = InMemorySaver(), InMemorySaver(serde=EncryptedSerializer.from_pycryptodome_aes(key=KEY))
    run_threads(old, THREADS[:1], turns=1)
    src, dst = native_for(old), native_for(new)
    assert not passthrough(src, dst)
    raw = list(src.read_thread(THREADS[0], encoded=True))
    assert any(w.typed for item in raw for w in item.writes)
    with pytest.raises(ValueError, match="without decoding"):
        dst.write_checkpoints(raw)
    decoded = list(src.read_thread(THREADS[0]))
    assert [i.key for i in decoded] == [i.key for i in raw]
    assert all(w.typed is None for item in decoded for w in item.writes)  # the check's read


def test_cli_new_serde_encrypted_reencodes_and_needs_the_key(sqlite_path, pg_url, state, monkeypatch, capsys) -> None:
    import psycopg

    from dualsaver.cli import main

    with open_saver(f"sqlite:///{sqlite_path}") as old:
        run_threads(old, THREADS[:2], turns=1)
        source = normalize(snapshot_sqlite(str(sqlite_path), old.serde))
    argv = ["backfill", "--old", f"sqlite:///{sqlite_path}", "--new", pg_url, "--state", str(state),
            "--no-progress", "--new-serde", "encrypted"]
    monkeypatch.delenv("LANGGRAPH_AES_KEY", raising=False)
    assert main(argv) == 2 and "LANGGRAPH_AES_KEY" in capsys.readouterr().err
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY.decode())
    assert main(argv) == 0
    encrypted = EncryptedSerializer.from_pycryptodome_aes(key=KEY)
    assert normalize(snapshot_postgres(pg_url, encrypted)) == source
    with psycopg.connect(pg_url) as conn:
        types = {r[0] for r in conn.execute("SELECT type FROM checkpoint_writes UNION SELECT type FROM checkpoint_blobs")}
    assert types and all(t.endswith("+aes") for t in types)
