"""No silent change: a value the target cannot hold exactly is refused and named, never
converted under exit 0. NaN/Infinity in a SQLite checkpoint's metadata (or in a channel value
kept inline) used to reach PostgreSQL as null through orjson; the official Redis saver turns
them into None and strips NUL from metadata strings. Every copy path (backfill, repair, the
lazy copy) writes through the same native writers, so each is tried here on real servers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dualsaver import backfill, repair
from dualsaver.cli import main
from dualsaver.migrate import copy_thread
from dualsaver.stores import native_for, open_saver

from .preflight_support import INF, NAN, put

BAD = {  # thread -> (metadata, channel values)
    "nan-meta": ({"score": NAN}, {}),
    "inf-meta": ({"nested": {"hi": INF, "lo": -INF}}, {}),
    "nan-inline": ({}, {"score": NAN}),
}
HEALTHY = ["ok-1", "ok-2", "7c4f3a52-2b65-4c8a-9d0e-5f1a6b2c3d4e"]


def source(path: Path) -> str:
    url = f"sqlite:///{path}"
    with open_saver(url) as saver:
        for thread_id, (metadata, values) in BAD.items():
            put(saver, thread_id, metadata=metadata, values=values)
        for thread_id in HEALTHY:
            put(saver, thread_id, metadata={"score": 0.5})
    return url


def metadata_in(url: str) -> dict[str, dict]:
    with open_saver(url) as saver:
        store = native_for(saver)
        return {t: item.metadata for t in store.thread_ids() for item in store.read_thread(t)}


def test_backfill_into_postgres_refuses_and_names_non_finite_rows(tmp_path: Path, pg_url: str) -> None:
    old = source(tmp_path / "old.sqlite")
    with open_saver(old) as src, open_saver(pg_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "progress.sqlite")
    assert result.failed == len(BAD) and result.unreadable == len(BAD)
    named = {row["thread_id"]: row for row in result.bad_rows}
    assert set(named) == set(BAD)
    for thread_id, row in named.items():
        assert row["checkpoint_id"] and row["checkpoint_ns"] == ""
        assert "LossyValue" in row["error"] and "postgres.json-non-finite" in row["error"], row
    assert "$.score" in named["nan-meta"]["error"] and "$.nested.hi" in named["inf-meta"]["error"]
    assert "checkpoint holds NaN" in named["nan-inline"]["error"]
    assert "unreadable: thread nan-meta" in result.summary()
    copied = metadata_in(pg_url)
    assert set(copied) == set(HEALTHY), "no converted row reached PostgreSQL"
    assert all(m["score"] == 0.5 for m in copied.values())


def test_cli_backfill_exits_1_and_names_them_in_json(tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture) -> None:
    old = source(tmp_path / "old.sqlite")
    code = main(["backfill", "--old", old, "--new", pg_url, "--json", "--no-progress", "--no-preflight",
                 "--state", str(tmp_path / "p.sqlite")])
    out = capsys.readouterr()
    assert code == 1
    result = json.loads(out.out.strip().splitlines()[-1])
    assert {r["thread_id"] for r in result["bad_rows"]} == set(BAD)
    assert "unreadable: thread nan-meta" in out.err and "postgres.json-non-finite" in out.err


def test_allowed_non_finite_is_converted_and_the_rest_still_refused(tmp_path: Path, pg_url: str) -> None:
    old = source(tmp_path / "old.sqlite")
    with open_saver(old) as src, open_saver(pg_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "progress.sqlite", allow_lossy="non-finite")
    assert result.failed == 0 and result.allowed_lossy == ["non-finite"]
    assert {(f["thread_id"], f["rule"]) for f in result.lossy} == {(t, "postgres.json-non-finite") for t in BAD}
    assert "changed: postgres.json-non-finite: thread 'nan-meta'" in result.summary()
    copied = metadata_in(pg_url)
    assert copied["nan-meta"]["score"] is None and copied["inf-meta"]["nested"] == {"hi": None, "lo": None}


def test_repair_and_lazy_copy_refuse_them_too(tmp_path: Path, pg_url: str) -> None:
    old = source(tmp_path / "old.sqlite")
    with open_saver(old) as src, open_saver(pg_url) as dst:
        lazy = copy_thread(src, dst, "nan-meta")
        assert not lazy.ok and "postgres.json-non-finite" in lazy.bad_rows[0]["error"]
        fixed = repair(src, dst, thread_ids=["inf-meta", "ok-1"])
        assert fixed.repaired_threads == ["ok-1"]
        (bad,) = [o for o in fixed.outcomes if not o.ok]
        assert bad.thread_id == "inf-meta" and "postgres.json-non-finite" in bad.copy.bad_rows[0]["error"]
    assert set(metadata_in(pg_url)) == {"ok-1"}


def test_official_redis_target_refuses_what_its_json_would_change(tmp_path: Path, langgraph_redis_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with open_saver(url) as saver:
        put(saver, "nan-meta", metadata={"score": NAN})
        put(saver, "nan-value", values={"v": -INF})
        put(saver, "nul-meta", metadata={"note": {"text": "a\x00b"}})
        put(saver, "fine", metadata={"score": 1.5})
    with open_saver(url) as src, open_saver(langgraph_redis_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "progress.sqlite", preflight=False)
        errors = {row["thread_id"]: row["error"] for row in result.bad_rows}
        assert set(errors) == {"nan-meta", "nan-value", "nul-meta"}
        assert "langgraph-redis.json-non-finite" in errors["nan-meta"] and "channel values" in errors["nan-value"]
        assert "langgraph-redis.json-nul" in errors["nul-meta"]
        assert [c.metadata["score"] for c in dst.list({"configurable": {"thread_id": "fine"}})] == [1.5]
        assert dst.get_tuple({"configurable": {"thread_id": "nan-meta"}}) is None


def test_redis_msgpack_holds_non_finite_exactly(tmp_path: Path, redis_url: str) -> None:
    """dualsaver's own Redis layout needs no rule for them: msgpack keeps NaN and Infinity."""
    old = source(tmp_path / "old.sqlite")
    with open_saver(old) as src, open_saver(redis_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "progress.sqlite")
    assert result.failed == 0
    copied = metadata_in(redis_url)
    assert math.isnan(copied["nan-meta"]["score"]) and copied["inf-meta"]["nested"]["lo"] == -INF


def test_official_redis_target_refuses_threads_its_search_cannot_find(tmp_path: Path, langgraph_redis_url: str) -> None:
    """Without the scan, a thread it could never list again is a named bad row (backfill and
    repair alike), unless search-syntax is accepted."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    lost = ["_", "a,b", "nul\x00id"]
    with open_saver(url) as saver:
        for thread_id in [*lost, "fine"]:
            put(saver, thread_id)
    with open_saver(url) as src, open_saver(langgraph_redis_url) as dst:
        result = backfill(src, dst, state_path=tmp_path / "p.sqlite", preflight=False)
        assert sorted(r["thread_id"] for r in result.bad_rows) == sorted(lost)
        assert all("langgraph-redis.search-syntax" in r["error"] for r in result.bad_rows)
        fixed = repair(src, dst, thread_ids=["_"])
        assert not fixed.ok and "langgraph-redis.search-syntax" in fixed.outcomes[0].copy.bad_rows[0]["error"]
        accepted = backfill(src, dst, state_path=tmp_path / "p.sqlite", preflight=False, allow_lossy="search-syntax")
        assert accepted.failed == 0 and accepted.checkpoints == len(lost)
