"""Preflight on real servers: the issue's cases in a SQLite source, judged against PostgreSQL,
dualsaver's Redis and the official Redis saver; each rule names exactly its threads (ordinary
ids and UUIDs never); the CLI's exit codes and reports; a backfill refused, then accepted with
--allow-lossy, its result naming what it changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualsaver import PreflightRefused, apreflight, backfill, preflight
from dualsaver.cli import main
from dualsaver.preflight import PreflightReport
from dualsaver.report.preflight import preflight_html, preflight_markdown
from dualsaver.stores import aopen_saver, open_saver

from .preflight_support import CASES, ORDINARY, by_rule, expected, plant, put


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    with open_saver(url) as saver:
        plant(saver)
    return url


@pytest.fixture(params=["postgres", "redis", "langgraph-redis"])
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    fixture = {"postgres": "pg_url", "redis": "redis_url", "langgraph-redis": "langgraph_redis_url"}[request.param]
    return request.param, request.getfixturevalue(fixture)


def test_each_rule_names_exactly_its_threads(source: str, target: tuple[str, str]) -> None:
    kind, url = target
    with open_saver(source) as src, open_saver(url) as dst:
        report = preflight(src, dst)
    assert report.target_kind == kind
    assert by_rule(report) == expected(kind)
    assert not set(report.affected_threads()) & set(ORDINARY)
    assert report.threads_scanned == len({c.thread_id for c in CASES}) and report.unreadable == 0


async def test_async_preflight_finds_the_same(source: str, langgraph_redis_url: str) -> None:
    async with aopen_saver(source) as src:
        report = await apreflight(src, "langgraph-redis")
    assert by_rule(report) == expected("langgraph-redis")


def test_collision_groups_name_the_shared_key(source: str) -> None:
    with open_saver(source) as src:
        groups = preflight(src, "langgraph-redis").groups()
    assert groups[("langgraph-redis.case-fold", "alice")] == ["Alice", "alice"]
    assert groups[("langgraph-redis.space-fold", "a b")] == ["a\nb", "a b"]
    assert groups[("langgraph-redis.key-join", "a:b:__empty__")] == ["a", "a:b"]
    assert sorted(groups[("langgraph-redis.empty-id", "00000000-0000-0000-0000-000000000000")]) == [
        "", "00000000-0000-0000-0000-000000000000"]


def test_shards_add_up_to_the_whole_without_repeats(tmp_path: Path) -> None:
    """Fold collisions are judged over every id whatever the shard, and reported once."""
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with open_saver(url) as saver:
        for case in CASES:
            if case.thread_id != "a":  # key-join needs both pairs in one shard (see _scan's docstring)
                put(saver, case.thread_id, case.ns, case.metadata, case.values)
        whole = preflight(saver, "langgraph-redis")
        parts = [preflight(saver, "langgraph-redis", shard=(i, 3)) for i in range(3)]
    keys = sorted((f.rule, f.thread_id, f.checkpoint_ns) for p in parts for f in p.findings)
    assert keys == sorted((f.rule, f.thread_id, f.checkpoint_ns) for f in whole.findings)
    assert sum(p.threads_scanned for p in parts) == whole.threads_scanned


def test_byte_limits_flag_only_the_large_thread(tmp_path: Path, redis_url: str) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with open_saver(url) as saver:
        put(saver, "big", values={"history": "x" * 5000})
        put(saver, "small", values={"history": "x" * 50})
        report = preflight(saver, "redis", limits={"redis_bytes": 4096})
        pg = preflight(saver, "postgres", limits={"postgres_bytes": 4096})
    assert by_rule(report) == {"redis.size": {"big"}} and by_rule(pg) == {"postgres.size": {"big"}}


def test_cli_exit_codes_and_reports(source: str, tmp_path: Path, langgraph_redis_url: str,
                                    capsys: pytest.CaptureFixture) -> None:
    paths = {ext: tmp_path / f"pre.{ext}" for ext in ("json", "md", "html")}
    code = main(["preflight", "--old", source, "--new", langgraph_redis_url, "--report", str(paths["json"]),
                 "--markdown", str(paths["md"]), "--html", str(paths["html"])])
    err = capsys.readouterr().err
    assert code == 1 and "langgraph-redis.case-fold" in err and "stack-secret" not in err
    data = json.loads(paths["json"].read_text())
    assert by_rule(PreflightReport.from_dict(data)) == expected("langgraph-redis")
    assert {"rule": "langgraph-redis.case-fold", "key": "alice", "threads": ["Alice", "alice"]} in data["groups"]
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert "`langgraph-redis.key-join`" in md and "a:b:\\_\\_empty\\_\\_" in md
    assert "&#x27;a\\nb&#x27;" in page and "stack-secret" not in page + md
    clean = tmp_path / "clean.sqlite"
    with open_saver(f"sqlite:///{clean}") as saver:
        put(saver, ORDINARY[0])
    assert main(["preflight", "--old", f"sqlite:///{clean}", "--new", langgraph_redis_url]) == 0
    assert main(["preflight", "--old", f"sqlite:///{tmp_path / 'absent.sqlite'}", "--new",
                 langgraph_redis_url]) == 2


def test_renderers_escape_ids() -> None:
    report = PreflightReport("langgraph-redis", "old", "new")
    from dualsaver.preflight import Finding

    report.add(Finding("langgraph-redis.search-syntax", "<b>|x`", what="its tag search cannot find it"))
    assert "<b>" not in preflight_html(report) and "\\<b\\>\\|x\\`" in preflight_markdown(report)


def test_backfill_refused_then_accepted_into_the_official_saver(tmp_path: Path, langgraph_redis_url: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with open_saver(url) as saver:
        for thread_id in ("Alice", "alice", *ORDINARY):
            put(saver, thread_id)
        put(saver, "nan-meta", metadata={"score": float("nan")})
    args = ["backfill", "--old", url, "--new", langgraph_redis_url, "--no-progress", "--json",
            "--state", str(tmp_path / "p.sqlite")]
    assert main(args) == 1
    out = capsys.readouterr()
    refused = json.loads(out.out.strip().splitlines()[-1])
    assert refused["refused"] and {f["thread_id"] for f in refused["preflight"]["findings"]} == {
        "Alice", "alice", "nan-meta"}
    assert "--allow-lossy case-fold,non-finite" in out.err
    with open_saver(langgraph_redis_url) as dst:
        assert list(dst.list(None)) == [], "a refused backfill copies nothing"
    assert main([*args, "--allow-lossy", "case-fold"]) == 1  # non-finite still refused
    capsys.readouterr()
    assert main([*args, "--allow-lossy", "case-fold,non-finite"]) == 0
    accepted = capsys.readouterr()
    assert "copy is exact except what --allow-lossy accepted" in accepted.err  # never a bare "exact"
    result = json.loads(accepted.out.strip().splitlines()[-1])
    assert {(f["thread_id"], f["rule"]) for f in result["lossy"]} == {
        ("Alice", "langgraph-redis.case-fold"), ("alice", "langgraph-redis.case-fold"),
        ("nan-meta", "langgraph-redis.json-non-finite")}
    assert result["allowed_lossy"] == ["case-fold", "non-finite"] and result["failed"] == 0
    with open_saver(langgraph_redis_url) as dst:
        assert dst.get_tuple({"configurable": {"thread_id": "nan-meta"}}).metadata["score"] is None


def test_backfill_api_refuses_into_postgres_when_asked(tmp_path: Path, pg_url: str) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with open_saver(url) as saver:
        put(saver, "ok")
        put(saver, "nul\x00id")
    with open_saver(url) as src, open_saver(pg_url) as dst:
        with pytest.raises(PreflightRefused) as refused:
            backfill(src, dst, state_path=tmp_path / "p.sqlite", preflight=True)
        assert refused.value.report.affected_threads() == ["nul\x00id"]
        assert list(dst.list(None)) == []
        result = backfill(src, dst, state_path=tmp_path / "p.sqlite", allow_lossy=["nul"])
    # accepted, but PostgreSQL cannot store a NUL in text at all: the row is refused loudly
    assert [f["thread_id"] for f in result.lossy] == ["nul\x00id"] and result.failed == 1
    assert [r["thread_id"] for r in result.bad_rows] == ["nul\x00id"]


async def test_async_backfill_scans_the_official_saver_by_default(tmp_path: Path, langgraph_redis_url: str) -> None:
    from dualsaver import abackfill

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with open_saver(url) as saver:
        for thread_id in ("Alice", "alice", "user-1"):
            put(saver, thread_id)
    async with aopen_saver(url) as src, aopen_saver(langgraph_redis_url) as dst:
        with pytest.raises(PreflightRefused, match="case-fold"):
            await abackfill(src, dst, state_path=tmp_path / "p.sqlite")
        result = await abackfill(src, dst, state_path=tmp_path / "p.sqlite", allow_lossy="case-fold")
    assert sorted(f["thread_id"] for f in result.lossy) == ["Alice", "alice"] and result.checkpoints == 3
