"""Lone surrogates ('\\ud800': a Python str can hold one, UTF-8 cannot encode it), measured on
the real targets.

Where a source can hold one: an `InMemorySaver` keeps ids as Python strs (thread, namespace,
checkpoint id, a write's task id and channel); a SQLite row whose metadata JSON carries a
`\\ud800` escape (as `json.dumps` writes it by default) reads back holding one. Channel values
and writes need no rule: the default serializer writes a lone surrogate in a string as `?`
on every saver (SQLite and memory too), so the source already holds `?`; a value it pickled
is re-encoded by the target's serializer, which refuses it loudly.

What the targets do (`test_preflight_upstream` re-runs it on the bare savers): PostgreSQL,
dualsaver's Redis and the official Redis saver refuse every id; PostgreSQL and the official
saver refuse metadata; dualsaver's Redis writes a metadata string's surrogate as `?`, and
SQLite (its UTF-8 encoding with errors='ignore') drops one from a metadata string or key, so
their writers refuse it unless `--allow-lossy surrogate` (rules `redis.surrogate`,
`sqlite.surrogate`).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from dualsaver import PreflightRefused, backfill, preflight
from dualsaver.report.preflight import preflight_html, preflight_markdown
from dualsaver.stores import native_for, open_saver

from .preflight_support import by_rule, put

S = "a\ud800b"
LG = "langgraph-redis"
ID_RULE = {"postgres": "postgres.surrogate", "redis": "redis.surrogate-id", LG: "langgraph-redis.surrogate"}
META_RULE = {"postgres": "postgres.surrogate", "redis": "redis.surrogate", LG: "langgraph-redis.surrogate"}
HEALTHY = ["fine", "7c4f3a52-2b65-4c8a-9d0e-5f1a6b2c3d4e", "é-unicode"]


@pytest.fixture(params=["postgres", "redis", "langgraph-redis"])
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    fixture = {"postgres": "pg_url", "redis": "redis_url", "langgraph-redis": "langgraph_redis_url"}[request.param]
    return request.param, request.getfixturevalue(fixture)


def memory_source() -> InMemorySaver:
    """Surrogates in every id an `InMemorySaver` keeps as it was given."""
    saver = InMemorySaver()
    put(saver, "tid-" + S)
    put(saver, "in-ns", "ns-" + S)
    checkpoint_id = put(saver, "in-checkpoint-id")
    storage = saver.storage["in-checkpoint-id"][""]
    storage["1f0-" + S] = storage.pop(checkpoint_id)
    for thread_id, task_id, channel in (("in-task", "task-" + S, "ch"), ("in-channel", "task-1", "ch-" + S)):
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "",
                                   "checkpoint_id": put(saver, thread_id)}}
        saver.put_writes(config, [(channel, 1)], task_id)
    for thread_id in HEALTHY:
        put(saver, thread_id, metadata={"note": "ok"})
    return saver


SURROGATE_IDS = ["tid-" + S, "in-ns", "in-checkpoint-id", "in-task", "in-channel"]


def legacy_sqlite(path: Path) -> str:
    """Metadata JSON with `\\ud800` escapes, in a string and in a key."""
    url = f"sqlite:///{path}"
    with open_saver(url) as saver:
        for thread_id in ["meta-string", "meta-key", *HEALTHY]:
            put(saver, thread_id, metadata={"note": "ok"})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE checkpoints SET metadata = ? WHERE thread_id = 'meta-string'",
                     (b'{"source": "input", "step": 1, "note": {"x": ["a\\ud800b"]}}',))
        conn.execute("UPDATE checkpoints SET metadata = ? WHERE thread_id = 'meta-key'",
                     (b'{"source": "input", "step": 1, "a\\ud800b": 1}',))
    conn.close()
    return url


def thread_metadata(url: str) -> dict[str, dict]:
    with open_saver(url) as saver:
        store = native_for(saver)
        return {t: item.metadata for t in store.thread_ids() for item in store.read_thread(t)}


def test_the_default_serializer_already_writes_a_value_surrogate_as_a_question_mark() -> None:
    """Why channel values and writes have no rule: the source changed them when it was written."""
    serde = JsonPlusSerializer()
    assert serde.loads_typed(serde.dumps_typed({"v": [S]})) == {"v": ["a?b"]}
    with pytest.raises(TypeError, match="surrogates"):
        serde.dumps_typed({S: 1})  # in a key it refuses


def test_preflight_names_a_surrogate_in_every_id(target: tuple[str, str]) -> None:
    kind, url = target
    with open_saver(url) as dst:
        report = preflight(memory_source(), dst)
    assert by_rule(report) == {ID_RULE[kind]: set(SURROGATE_IDS)}
    assert "a lone surrogate in the thread id" in {f.what for f in report.findings if f.thread_id == "tid-" + S}
    for text in (report.summary(), preflight_markdown(report), preflight_html(report)):
        assert "tid-a\\ud800b" in text and text.encode()  # named, and still UTF-8 (a file, a terminal)


def test_preflight_names_the_thread_and_json_path_in_metadata(tmp_path: Path, target: tuple[str, str]) -> None:
    kind, url = target
    with open_saver(legacy_sqlite(tmp_path / "old.sqlite")) as src, open_saver(url) as dst:
        report = preflight(src, dst)
    assert by_rule(report) == {META_RULE[kind]: {"meta-string", "meta-key"}}
    what = {f.thread_id: f.what for f in report.findings}
    assert what["meta-string"].endswith("metadata at $.note.x[0]")
    assert what["meta-key"].endswith("metadata at $.a\\ud800b")


def test_every_writer_refuses_them_and_copies_the_rest(tmp_path: Path, target: tuple[str, str]) -> None:
    """No silent change: each surrogate row is a named bad row; nothing reaches the target as `?`."""
    kind, url = target
    with open_saver(legacy_sqlite(tmp_path / "old.sqlite")) as src, open_saver(url) as dst:
        from_sqlite = backfill(src, dst, state_path=tmp_path / "p1.sqlite", preflight=False)
        from_memory = backfill(memory_source(), dst, state_path=tmp_path / "p2.sqlite", preflight=False)
    assert {r["thread_id"] for r in from_sqlite.bad_rows} == {"meta-string", "meta-key"}
    assert {r["thread_id"] for r in from_memory.bad_rows} == set(SURROGATE_IDS)
    if kind == "redis":  # the one silent change, refused by the writer by name
        (error,) = [r["error"] for r in from_sqlite.bad_rows if r["thread_id"] == "meta-string"]
        assert "redis.surrogate" in error and "$.note.x[0]" in error
    assert "tid-a\\ud800b" in from_memory.summary()  # the summary (kept in the progress file) stays UTF-8
    assert set(thread_metadata(url)) == set(HEALTHY)


def test_redis_writes_the_accepted_surrogate_as_a_question_mark(tmp_path: Path, redis_url: str) -> None:
    with open_saver(legacy_sqlite(tmp_path / "old.sqlite")) as src, open_saver(redis_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "p.sqlite", allow_lossy="surrogate")
    assert {(f["thread_id"], f["rule"]) for f in result.lossy} == {("meta-string", "redis.surrogate"),
                                                                    ("meta-key", "redis.surrogate")}
    assert [r["thread_id"] for r in result.bad_rows] == ["meta-key"]  # in a key msgpack still refuses
    assert thread_metadata(redis_url)["meta-string"]["note"] == {"x": ["a?b"]}


def test_a_surrogate_preflight_refuses_the_backfill_by_class(tmp_path: Path, pg_url: str) -> None:
    with open_saver(legacy_sqlite(tmp_path / "old.sqlite")) as src, open_saver(pg_url) as dst, \
            pytest.raises(PreflightRefused, match="classes surrogate"):
        backfill(src, dst, state_path=tmp_path / "p.sqlite", preflight=True)


def test_a_sqlite_target_refuses_metadata_surrogates_by_name(tmp_path: Path) -> None:
    """SqliteSaver's metadata encoding (UTF-8, errors='ignore') drops a lone surrogate, in a
    string or a key: its writer refuses both rows by name, and copies the rest."""
    new_url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(legacy_sqlite(tmp_path / "old.sqlite")) as src, open_saver(new_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "p.sqlite", preflight=False)
    errors = {r["thread_id"]: r["error"] for r in result.bad_rows}
    assert set(errors) == {"meta-string", "meta-key"}
    assert all("sqlite.surrogate" in e for e in errors.values())
    assert "$.note.x[0]" in errors["meta-string"] and "$.a\\ud800b" in errors["meta-key"]
    assert set(thread_metadata(new_url)) == set(HEALTHY)


def test_a_sqlite_preflight_names_them_and_the_accepted_copy_drops_them(tmp_path: Path) -> None:
    new_url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    with open_saver(legacy_sqlite(tmp_path / "old.sqlite")) as src, open_saver(new_url) as dst:
        report = preflight(src, dst)
        assert by_rule(report) == {"sqlite.surrogate": {"meta-string", "meta-key"}}
        with pytest.raises(PreflightRefused, match="classes surrogate"):
            backfill(src, dst, state_path=tmp_path / "p1.sqlite", preflight=True)
        result = backfill(src, dst, state_path=tmp_path / "p2.sqlite", allow_lossy="surrogate")
    assert {(f["thread_id"], f["rule"]) for f in result.lossy} == {("meta-string", "sqlite.surrogate"),
                                                                    ("meta-key", "sqlite.surrogate")}
    assert result.bad_rows == []
    metadata = thread_metadata(new_url)
    assert metadata["meta-string"]["note"] == {"x": ["ab"]} and metadata["meta-key"]["ab"] == 1


@pytest.mark.parametrize("progress", ["file", "control store"])
def test_a_thread_id_with_a_surrogate_is_copied_and_resumed_between_stores_that_hold_it(
    tmp_path, pg_url, progress, monkeypatch
) -> None:
    """Memory to memory holds such an id exactly: the backfill copies it, records its progress
    without an exception escaping its writer thread, and a second run resumes: from the local
    file every thread, from the control store (UTF-8 text) all but that one, copied again."""
    escaped: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    old, new = InMemorySaver(), InMemorySaver()
    ids = ["plain-1", "t\ud800x", "plain-2", "caf\u00e9"]
    for tid in ids:
        put(old, tid, values={"n": "x"})
    where = {"state_path": tmp_path / "p.sqlite"} if progress == "file" else {"control": pg_url}
    first = backfill(old, new, preflight=False, **where)
    assert escaped == [] and first.failed == 0 and first.checkpoints == len(ids)
    assert {t.config["configurable"]["thread_id"] for t in new.list(None)} == set(ids)
    again = backfill(old, new, preflight=False, **where)
    assert escaped == [] and again.failed == 0
    if progress == "file":
        assert (again.threads_resumed, again.threads) == (len(ids), 0)
    else:
        assert (again.threads_resumed, again.threads, again.skipped) == (len(ids) - 1, 1, 1)
