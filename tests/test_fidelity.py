"""Both stores receive the same content, whatever the caller does to its objects, and
migration keeps working across serializers and channel-version formats."""

from __future__ import annotations

import threading

import pytest

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from dualsaver import DualSaver, Phase
from tests.faulty import Faulty
from tests.graphs import build_agent, config, expected_results, run_turn
from tests.savers import sync_saver


@pytest.mark.parametrize("behind", [False, True], ids=["waiting", "write-behind"])
def test_caller_mutating_its_objects_during_the_call_does_not_split_the_stores(tmp_path, behind):
    with sync_saver("sqlite", tmp=tmp_path) as a, sync_saver("sqlite", tmp=tmp_path) as b:
        new = Faulty(b)
        new.mode = "hang"  # the secondary waits until the caller has mutated its objects
        saver = DualSaver(a, new, secondary_timeout=30, journal=tmp_path / "j.sqlite", write_behind=behind)
        cp = empty_checkpoint()
        messages = ["hello"]
        cp["channel_values"] = {"messages": messages}
        cp["channel_versions"] = {"messages": saver.get_next_version(None, None)}
        metadata = {"source": "loop", "step": 1, "note": "original"}
        cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        call = threading.Thread(target=saver.put, args=(cfg, cp, metadata, cp["channel_versions"]))
        call.start()
        assert new.entered.wait(30)
        # LangGraph-style mutation while the call is still running, then after it.
        messages.append("MUTATED")
        metadata["note"] = "mutated"
        new.release.set()
        call.join(30)
        messages.append("AFTER")
        assert saver.flush(timeout=30)
        for store in (a, b):
            got = store.get_tuple(config("t"))
            assert got.checkpoint["channel_values"]["messages"] == ["hello"]
            assert got.metadata["note"] == "original"


class Keeping(InMemorySaver):
    """Notes the objects each put received."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple] = []

    def put(self, config, checkpoint, metadata, new_versions):
        self.received.append((checkpoint, metadata, new_versions))
        return super().put(config, checkpoint, metadata, new_versions)


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_values_are_copied_only_where_two_stores_must_get_them_alike(tmp_path, phase):
    """Decommission writes new alone: it gets the caller's objects, as it would on its own
    (a copy there cost about three quarters of dualsaver's CPU a write: 31 -> 8 us); every
    phase that writes both stores hands each a copy taken at call time."""
    old, new = Keeping(), Keeping()
    saver = DualSaver(old, new, phase, journal=tmp_path / "j.sqlite")
    cp = empty_checkpoint()
    cp["channel_values"], cp["channel_versions"] = {"messages": ["hello"]}, {"messages": 1}
    metadata, versions = {"source": "loop", "step": 1}, {"messages": 1}
    saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, cp, metadata, versions)
    assert saver.flush(timeout=30)
    saver.close()
    received = [r for store in (old, new) for r in store.received]
    assert len(received) == (1 if phase is Phase.DECOMMISSION else 2)
    for got in received:
        assert got == (cp, metadata, versions)
        shared = [a is b for a, b in zip(got, (cp, metadata, versions))]
        assert shared == [phase is Phase.DECOMMISSION] * 3


def test_different_serializers_on_each_side(tmp_path, pg_url):
    encrypted = EncryptedSerializer.from_pycryptodome_aes(key=b"0123456789abcdef")
    with sync_saver("sqlite", tmp=tmp_path) as old:
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(pg_url) as new:
            new.serde = encrypted
            new.setup()
            saver = DualSaver(old, new, journal=tmp_path / "j.sqlite")
            app = build_agent(saver)
            run_turn(app, "t", "alpha")
            saver.phase = Phase.BACKFILL
            saver.phase = Phase.READ_SWITCH
            final = run_turn(app, "t", "beta")
            assert final["results"] == expected_results("alpha", "beta")
            assert new.get_tuple(config("t")).checkpoint["channel_values"]["results"] == final["results"]
            # new's rows really are encrypted: a plain serializer cannot read them.
            with new._cursor() as cur:
                cur.execute("SELECT type FROM checkpoint_blobs WHERE channel = 'results' LIMIT 1")
                assert cur.fetchone()["type"].endswith("+aes")


class IntVersionSaver(InMemorySaver):
    """An old store with the base class's integer channel versions."""

    get_next_version = BaseCheckpointSaver.get_next_version


def test_int_versions_on_old_keep_working_through_every_phase(tmp_path, pg_url):
    old = IntVersionSaver()
    run_turn(build_agent(old), "t", "alpha")  # history written before the migration
    with sync_saver("postgres", pg_url=pg_url) as new:
        saver = DualSaver(old, new, journal=tmp_path / "j.sqlite")
        app = build_agent(saver)
        topics = ["alpha"]
        for phase in Phase:
            saver.phase = phase
            if phase is Phase.READ_SWITCH:
                saver.get_tuple(config("t"))  # reads of a thread new never saw copy it over
            topic = f"t-{phase.value}"
            final = run_turn(app, "t", topic)
            topics.append(topic)
            assert final["results"] == expected_results(*topics)
            assert saver.flush(timeout=30)
            versions = new.get_tuple(config("t")).checkpoint["channel_versions"]
            assert {type(v) for v in versions.values()} == {int}, versions
        # A brand-new thread takes the format of the phase's primary (new: strings).
        run_turn(app, "fresh", "x")
        assert saver.flush(timeout=30)
        fresh = new.get_tuple(config("fresh")).checkpoint["channel_versions"]
        assert {type(v) for v in fresh.values()} == {str}
