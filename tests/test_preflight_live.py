"""Live writes: in shadow-write, a write the new store cannot hold faithfully is not sent there
silently. It is journaled with its rule (the journal's error names the rule id), counted,
shown by `dualsaver status`, and the read-switch guard refuses while it waits. Ordinary
traffic beside it is mirrored as before. Real SQLite old, real official Redis / PostgreSQL new."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dualsaver import DualSaver
from dualsaver.cli import main
from dualsaver.control.journal import Journal
from dualsaver.control.phase import Evidence, Phase, guard_transition
from dualsaver.errors import TransitionError
from dualsaver.preflight.live import write_refusal
from dualsaver.stores import open_saver

from .preflight_support import NAN, nested, put


def cfg(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def shadow_traffic(new_url: str, tmp_path: Path, lossy: dict[str, dict]) -> tuple[Path, DualSaver, object, object]:
    journal = tmp_path / "journal.sqlite"
    old = open_saver(f"sqlite:///{tmp_path / 'old.sqlite'}")
    new = open_saver(new_url)
    old_saver, new_saver = old.__enter__(), new.__enter__()
    dual = DualSaver(old_saver, new_saver, phase="shadow-write", journal=journal, write_behind=False)
    put(dual, "user-1", metadata={"score": 0.5})
    for thread_id, kwargs in lossy.items():
        put(dual, thread_id, **kwargs)
    put(dual, "user-2")
    return journal, dual, (old, old_saver), (new, new_saver)


def test_official_saver_writes_it_cannot_hold_are_journaled_not_mirrored(
    tmp_path: Path, langgraph_redis_url: str, capsys: pytest.CaptureFixture
) -> None:
    lossy = {"nan-meta": {"metadata": {"score": NAN}}, "_": {}, "deep": {"values": {"d": nested(130)}}}
    journal, dual, (old, old_saver), (new, new_saver) = shadow_traffic(langgraph_redis_url, tmp_path, lossy)
    try:
        for thread_id in ("user-1", "user-2", *lossy):
            assert old_saver.get_tuple(cfg(thread_id)) is not None, "old, the primary, has every write"
        assert new_saver.get_tuple(cfg("user-1")).metadata["score"] == 0.5
        assert new_saver.get_tuple(cfg("user-2")) is not None
        for thread_id in lossy:
            assert new_saver.get_tuple(cfg(thread_id)) is None, f"{thread_id} was mirrored"
        entries = {e.thread_id: e for e in Journal(journal).pending()}
        assert set(entries) == set(lossy) and all(e.store == "new" for e in entries.values())
        assert "langgraph-redis.json-non-finite" in entries["nan-meta"].error
        assert "langgraph-redis.search-syntax" in entries["_"].error
        assert "langgraph-redis.deep-nesting" in entries["deep"].error
        assert dual.recorder.secondary_failures["put"] == len(lossy)
    finally:
        new.__exit__(None, None, None)
        old.__exit__(None, None, None)
    assert main(["status", "--journal", str(journal), "--old", "sqlite:///x.sqlite", "--new", "memory://"]) in (0, 1, 2)
    out = capsys.readouterr().out
    assert "3 write(s) in 3 thread(s) held back" in out and "langgraph-redis.search-syntax 1" in out
    # what the read-switch guard is given: the journal entries naming new
    waiting = sum(1 for e in Journal(journal).pending() if e.store == "new")
    ready = Evidence(backfill_at=time.time() - 10, backfill_ok=True, check_at=time.time(), check_clean=True,
                     unrepaired_new=waiting)
    with pytest.raises(TransitionError, match=r"\(d\) 3 journal"):
        guard_transition(Phase.BACKFILL, Phase.READ_SWITCH, ready)


def test_postgres_metadata_nul_is_held_back_not_stripped(tmp_path: Path, pg_url: str) -> None:
    """PostgresSaver strips a NUL from a top-level metadata string on its own: held back."""
    lossy = {"nul-meta": {"metadata": {"note": "a\x00b"}}}
    journal, _, (old, old_saver), (new, new_saver) = shadow_traffic(pg_url, tmp_path, lossy)
    try:
        assert new_saver.get_tuple(cfg("nul-meta")) is None and new_saver.get_tuple(cfg("user-2")) is not None
        (entry,) = Journal(journal).pending()
        assert entry.thread_id == "nul-meta" and "postgres.nul" in entry.error
    finally:
        new.__exit__(None, None, None)
        old.__exit__(None, None, None)


def test_other_targets_and_ordinary_writes_are_not_judged() -> None:
    ordinary = ({"configurable": {"thread_id": "Alice"}}, {"channel_values": {"x": 1.5}}, {"step": 1}, {})
    for kind in ("langgraph-redis", "postgres", "redis", "sqlite"):
        assert write_refusal(kind, "put", ordinary) is None
    nan = ({"configurable": {"thread_id": "t"}}, {"channel_values": {}}, {"score": NAN}, {})
    assert write_refusal("redis", "put", nan) is None  # msgpack holds NaN
    assert write_refusal("langgraph-redis", "put_writes", ({"configurable": {"thread_id": "t"}},
                                                            [("c", [NAN])], "task", "")).rule == (
        "langgraph-redis.json-non-finite")


def test_redis_metadata_surrogate_is_held_back_not_written_as_a_question_mark(tmp_path: Path, redis_url: str) -> None:
    """dualsaver's Redis writes a lone surrogate in metadata as `?` (its msgpack): held back."""
    lossy = {"surrogate-meta": {"metadata": {"note": {"text": "a\ud800b"}}}}
    journal, _, (old, _old_saver), (new, new_saver) = shadow_traffic(redis_url, tmp_path, lossy)
    try:
        assert new_saver.get_tuple(cfg("surrogate-meta")) is None and new_saver.get_tuple(cfg("user-2")) is not None
        (entry,) = Journal(journal).pending()
        assert entry.thread_id == "surrogate-meta" and "redis.surrogate" in entry.error
        assert "$.note.text" in entry.error
    finally:
        new.__exit__(None, None, None)
        old.__exit__(None, None, None)


def test_sqlite_metadata_surrogate_is_held_back_not_dropped(tmp_path: Path) -> None:
    """SqliteSaver encodes metadata as UTF-8 with errors='ignore', dropping a lone surrogate:
    held back from a SQLite secondary, and journaled. (The primary's own serializer is its
    business: memory's msgpack writes it as `?`, and refuses it in a key, so no such put
    reaches a secondary.)"""
    journal = tmp_path / "journal.sqlite"
    with open_saver("memory://") as old_saver, open_saver(f"sqlite:///{tmp_path / 'new.sqlite'}") as new_saver:
        dual = DualSaver(old_saver, new_saver, phase="shadow-write", journal=journal, write_behind=False)
        put(dual, "user-1", metadata={"note": "caf\u00e9"})
        put(dual, "surrogate-meta", metadata={"note": {"text": "a\ud800b"}})
        put(dual, "surrogate-list", metadata={"notes": ["ok", "a\udfffb"]})
        put(dual, "user-2")
        assert all(old_saver.get_tuple(cfg(t)) is not None for t in ("surrogate-meta", "surrogate-list"))
        assert new_saver.get_tuple(cfg("user-1")).metadata["note"] == "caf\u00e9"
        assert new_saver.get_tuple(cfg("user-2")) is not None
        for thread_id in ("surrogate-meta", "surrogate-list"):
            assert new_saver.get_tuple(cfg(thread_id)) is None, f"{thread_id} was mirrored"
        entries = {e.thread_id: e for e in Journal(journal).pending()}
        assert set(entries) == {"surrogate-meta", "surrogate-list"} and all(e.store == "new" for e in entries.values())
        assert all("sqlite.surrogate" in e.error for e in entries.values())
        assert "$.note.text" in entries["surrogate-meta"].error and "$.notes[1]" in entries["surrogate-list"].error
        assert write_refusal("sqlite", "put_writes", ({"configurable": {"thread_id": "t"}},
                                                      [("c", "a\ud800b")], "task", "")) is None
