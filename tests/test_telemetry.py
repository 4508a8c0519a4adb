"""Telemetry: spans and metrics of DualSaver operations (SDK in-memory exporters), shadow-read
mismatches published, and the CLI's SDK set-up from the standard OTEL_* variables."""

from __future__ import annotations

import http.server
import json
import sqlite3
import sys
import threading

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from dualsaver import DualSaver
from dualsaver.embedded import free_port
from tests.ops_support import cli_env, marker_of, put_marker, run_cli
from tests.otel_support import in_memory_telemetry, metric_value

SAME_ID = "1ef00000-0000-6000-8000-000000000001"


@pytest.fixture(scope="module")
def otel():
    return in_memory_telemetry()


@pytest.fixture
def spans(otel):
    exporter, _ = otel
    exporter.clear()
    return exporter


@pytest.fixture
def reader(otel):
    return otel[1]


def sqlite_saver(path) -> SqliteSaver:
    saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saver.setup()
    return saver


def cfg(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def tree(finished) -> dict[str, list[tuple[str, str]]]:
    """operation span name -> [(child span name, store)] in start order."""
    by_id = {s.context.span_id: s for s in finished}
    out: dict[str, list] = {}
    for s in sorted(finished, key=lambda s: s.start_time):
        if s.parent is None:
            out.setdefault(s.name, [])
        elif s.parent.span_id in by_id:
            parent = by_id[s.parent.span_id]
            assert parent.context.trace_id == s.context.trace_id
            out.setdefault(parent.name, []).append((s.name, s.attributes["dualsaver.store"]))
    return out


def test_every_operation_is_a_span_with_a_child_per_store(spans, tmp_path):
    old, new = sqlite_saver(tmp_path / "old.sqlite"), sqlite_saver(tmp_path / "new.sqlite")
    with DualSaver(old, new, "shadow-write", journal=tmp_path / "j.sqlite") as saver:
        put_marker(saver, "t1", "x")
        saver.get_tuple(cfg("t1"))
        assert len(list(saver.list(cfg("t1")))) == 1
    finished = spans.get_finished_spans()
    assert tree(finished) == {
        "dualsaver.put": [("dualsaver.store.put", "old"), ("dualsaver.store.put", "new")],
        "dualsaver.get_tuple": [("dualsaver.store.get_tuple", "old")],
        "dualsaver.list": [("dualsaver.store.list", "old")],
    }
    put = next(s for s in finished if s.name == "dualsaver.put")
    assert put.attributes["dualsaver.phase"] == "shadow-write" and put.attributes["dualsaver.thread_id"] == "t1"

    spans.clear()
    with DualSaver(old, new, "read-switch", journal=tmp_path / "j.sqlite") as saver:
        saver.get_tuple(cfg("t1"))
    assert tree(spans.get_finished_spans()) == {"dualsaver.get_tuple": [("dualsaver.store.get_tuple", "new")]}
    get = spans.get_finished_spans()[-1]
    assert get.attributes["dualsaver.phase"] == "read-switch"


async def test_async_operations_are_traced_the_same_way(spans, tmp_path):
    from langgraph.checkpoint.base import empty_checkpoint

    with DualSaver(InMemorySaver(), InMemorySaver(), "read-switch", journal=tmp_path / "j.sqlite") as saver:
        await saver.aput(cfg("a1"), empty_checkpoint(), {"step": 0}, {})
        await saver.aget_tuple(cfg("a1"))
    assert tree(spans.get_finished_spans()) == {
        "dualsaver.put": [("dualsaver.store.put", "new"), ("dualsaver.store.put", "old")],
        "dualsaver.get_tuple": [("dualsaver.store.get_tuple", "new")],
    }


def test_metrics_count_operations_by_store_and_outcome_and_secondary_failures(spans, reader, tmp_path):
    old, new = sqlite_saver(tmp_path / "old.sqlite"), sqlite_saver(tmp_path / "new.sqlite")
    new.conn.close()  # a real failure of the secondary: its connection is gone

    def snapshot() -> dict[str, float]:
        return {
            "old_ok": metric_value(reader, "dualsaver.store.operations", store="old", method="put", outcome="ok"),
            "new_error": metric_value(reader, "dualsaver.store.operations", store="new", method="put", outcome="error"),
            "failures": metric_value(reader, "dualsaver.secondary.failures", store="new", operation="put"),
            "depth": metric_value(reader, "dualsaver.journal.depth", journal=str(tmp_path / "j.sqlite")),
            "latency": metric_value(reader, "dualsaver.store.duration", store="old", method="put"),
        }

    before = snapshot()
    # without the breaker, so that each put reaches the broken store
    with DualSaver(old, new, "backfill", journal=tmp_path / "j.sqlite", circuit_cool_down=None) as saver:
        put_marker(saver, "t1", "a")
        put_marker(saver, "t2", "b")
        assert saver.journal.depth() == 2
        after = snapshot()  # the depth gauge reads open journals
    assert metric_value(reader, "dualsaver.journal.depth", journal=str(tmp_path / "j.sqlite")) == 0
    assert {k: after[k] - before[k] for k in after} == {
        "old_ok": 2, "new_error": 2, "failures": 2, "depth": 2, "latency": 2,
    }
    failed = [s for s in spans.get_finished_spans() if s.attributes.get("dualsaver.store") == "new"]
    assert [s.attributes.get("dualsaver.outcome") for s in failed] == ["error", "error"]


# --------------------------------------------------------------------------- shadow reads


@pytest.fixture
def diverged(tmp_path):
    """old and new hold thread 'differs' with different content, 'same' identically, and
    'only-old' only in old."""
    old, new = sqlite_saver(tmp_path / "old.sqlite"), sqlite_saver(tmp_path / "new.sqlite")
    put_marker(old, "differs", "from-old", checkpoint_id=SAME_ID)
    put_marker(new, "differs", "from-new", checkpoint_id=SAME_ID)
    for store in (old, new):
        put_marker(store, "same", "identical", checkpoint_id=SAME_ID)
    put_marker(old, "only-old", "from-old", checkpoint_id=SAME_ID)
    return old, new


def test_shadow_reads_answer_from_old_and_publish_mismatches(spans, reader, diverged, tmp_path):
    old, new = diverged
    before = metric_value(reader, "dualsaver.shadow_read.mismatches")
    with DualSaver(old, new, "shadow-write", shadow_read_rate=1.0, journal=tmp_path / "j.sqlite") as saver:
        assert marker_of(saver.get_tuple(cfg("differs"))) == "from-old"  # the caller gets old's answer
        assert marker_of(saver.get_tuple(cfg("same"))) == "identical"
        assert marker_of(saver.get_tuple(cfg("only-old"))) == "from-old"
        pending = list(saver.journal.pending())
        assert [(e.thread_id, e.operation, e.store) for e in pending] == [
            ("differs", "shadow_read", "new"), ("only-old", "shadow_read", "new"),
        ]
        assert "channel_values.marker" in pending[0].error and "from-" not in pending[0].error  # no values
        assert saver.shadow_mismatches == {"channel_values.marker": 1, "missing_in_new": 1}
    assert metric_value(reader, "dualsaver.shadow_read.mismatches") - before == 2
    assert tree(spans.get_finished_spans())["dualsaver.get_tuple"][:2] == [
        ("dualsaver.store.get_tuple", "old"), ("dualsaver.store.get_tuple", "new"),
    ]


@pytest.mark.parametrize("phase, rate", [("shadow-write", 0.0), ("read-switch", 1.0), ("decommission", 1.0)])
def test_no_shadow_read_when_not_sampled_or_not_in_an_old_read_phase(spans, diverged, tmp_path, phase, rate):
    old, new = diverged
    with DualSaver(old, new, phase, shadow_read_rate=rate, journal=tmp_path / "j.sqlite") as saver:
        saver.get_tuple(cfg("differs"))
        assert saver.shadow_mismatches == {}
    children = tree(spans.get_finished_spans())["dualsaver.get_tuple"]
    assert len(children) == 1  # one store answered, nothing else was asked


def test_shadow_read_rate_samples_a_share_of_reads(diverged, tmp_path):
    old, new = diverged
    with DualSaver(old, new, "backfill", shadow_read_rate=0.5, journal=tmp_path / "j.sqlite") as saver:
        for _ in range(400):
            saver.get_tuple(cfg("differs"))
        sampled = saver.shadow_mismatches["channel_values.marker"]
    assert 120 <= sampled <= 280  # about half of 400 reads; wide bounds, no timing


# --------------------------------------------------------------------------- the CLI's SDK


def test_cli_without_otel_variables_configures_nothing(tmp_path):
    done = run_cli("status", "--json", cwd=tmp_path)
    json.loads(done.stdout)
    assert "dualsaver.cli.status" not in done.stderr


def test_cli_console_exporter_writes_spans_to_stderr_and_keeps_stdout_clean(tmp_path):
    env = cli_env(OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none", OTEL_SERVICE_NAME="ops-test")
    done = run_cli("status", "--json", cwd=tmp_path, env=env)
    assert json.loads(done.stdout)["phase"]["phase"] == "shadow-write"
    assert '"name": "dualsaver.cli.status"' in done.stderr
    assert '"service.name": "ops-test"' in done.stderr


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_cli_exports_spans_over_otlp_http_to_the_endpoint(tmp_path):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _Collector.received = []
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = cli_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
            OTEL_METRICS_EXPORTER="none",
        )
        done = run_cli("status", "--json", cwd=tmp_path, env=env)
        json.loads(done.stdout)
    finally:
        server.shutdown()
    traces = [body for path, body in _Collector.received if path == "/v1/traces"]
    assert traces, _Collector.received
    request = ExportTraceServiceRequest()
    request.ParseFromString(traces[0])
    names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert "dualsaver.cli.status" in names
    service = [a.value.string_value for rs in request.resource_spans for a in rs.resource.attributes if a.key == "service.name"]
    assert service == ["dualsaver"]


def test_configure_otel_makes_library_spans_visible(tmp_path):
    code = """
from langgraph.checkpoint.memory import InMemorySaver
from dualsaver import DualSaver
from dualsaver.observability.otel_setup import configure_otel
from tests.ops_support import put_marker
telemetry = configure_otel({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"})
assert telemetry.traces == ["console"] and telemetry.metrics == ["console"], telemetry
with DualSaver(InMemorySaver(), InMemorySaver(), "shadow-write", journal=":memory:") as saver:
    put_marker(saver, "t1", "x")
telemetry.shutdown()
"""
    import subprocess

    from tests.ops_support import REPO

    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for fragment in ('"name": "dualsaver.put"', '"name": "dualsaver.store.put"', '"dualsaver.store": "new"',
                     '"name": "dualsaver.store.operations"'):
        assert fragment in done.stderr


# --------------------------------------------------------------------------- nobody listening

_ASKED = """
import asyncio, json, sqlite3, sys
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from dualsaver import DualSaver
from dualsaver.observability import telemetry
from tests.savers import aput_marker, put_marker

asked = []


class Counting:
    # Stands in for one of telemetry's instruments: notes every method asked of it.
    def __init__(self, name, inner):
        self.name, self.inner = name, inner

    def __getattr__(self, method):
        asked.append(f"{self.name}.{method}")
        return getattr(self.inner, method)


for name in ("tracer", "operations", "latency"):
    setattr(telemetry, name, Counting(name, getattr(telemetry, name)))
cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


def sqlite(path):
    saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saver.setup()
    return saver


def sync_calls(tag):
    # shadow-write, write-behind (the default): new's put runs on the background worker
    with DualSaver(sqlite(f"{tag}-old.db"), sqlite(f"{tag}-new.db"), "shadow-write", journal=":memory:") as saver:
        put_marker(saver, "t", "x")
        saver.get_tuple(cfg)
        list(saver.list(cfg))
        assert saver.flush(timeout=30)


async def async_calls(tag):
    async with AsyncSqliteSaver.from_conn_string(f"{tag}-aold.db") as old, \\
            AsyncSqliteSaver.from_conn_string(f"{tag}-anew.db") as new:
        await old.setup()
        await new.setup()
        async with DualSaver(old, new, "shadow-write", journal=":memory:") as saver:
            await aput_marker(saver, "t", "x")
            await saver.aget_tuple(cfg)
            [t async for t in saver.alist(cfg)]
            assert await saver.aflush(timeout=30)


sync_calls("quiet")
asyncio.run(async_calls("quiet"))
quiet = list(asked)
from tests.otel_support import in_memory_telemetry

exporter, _ = in_memory_telemetry()
sync_calls("sync")
by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
sync_spans = sorted((by_id[s.parent.span_id].name if s.parent else "", s.name, s.attributes.get("dualsaver.store", ""))
                    for s in by_id.values())
exporter.clear()
asyncio.run(async_calls("async"))
by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
async_spans = sorted((by_id[s.parent.span_id].name if s.parent else "", s.name, s.attributes.get("dualsaver.store", ""))
                     for s in by_id.values())
print(json.dumps({"quiet": quiet, "listening": sorted(set(asked) - set(quiet)),
                  "sync": sync_spans, "async": async_spans}))
"""


def test_no_span_or_metric_is_asked_for_until_an_sdk_listens(tmp_path):
    """In a fresh interpreter (this one may hold the tests' SDK): sync and async calls, the
    write-behind worker's included, ask the OpenTelemetry API nothing while no SDK listens;
    once one is installed, the same calls are traced, background writes as children of
    their calls."""
    import subprocess

    from tests.ops_support import REPO

    done = subprocess.run([sys.executable, "-c", _ASKED], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=cli_env(PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["quiet"] == []
    assert seen["listening"] == ["latency.record", "operations.add", "tracer.start_as_current_span",
                                 "tracer.start_span"]
    expected = [
        ["", "dualsaver.get_tuple", ""],
        ["", "dualsaver.list", ""],
        ["", "dualsaver.put", ""],
        ["dualsaver.get_tuple", "dualsaver.store.get_tuple", "old"],
        ["dualsaver.list", "dualsaver.store.list", "old"],
        ["dualsaver.put", "dualsaver.store.put", "new"],  # written behind, a child all the same
        ["dualsaver.put", "dualsaver.store.put", "old"],
    ]
    assert seen["sync"] == expected
    assert seen["async"] == expected


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_traced_dual_store_read_runs_its_plan_with_its_spans(spans, tmp_path, asynchronous):
    """Untraced, a read in shadow-write goes straight to old (`answered_alone`); traced, it
    keeps its operation span and its store's child span."""
    from langgraph.store.memory import InMemoryStore

    from dualsaver import DualStore

    with DualStore(InMemoryStore(), InMemoryStore(), "shadow-write", journal=tmp_path / "j.sqlite") as store:
        store.old.put(("u",), "k", {"a": 1})
        found = await store.aget(("u",), "k") if asynchronous else store.get(("u",), "k")
    assert found.value == {"a": 1}
    assert tree(spans.get_finished_spans()) == {"dualsaver.store.batch": [("dualsaver.store.batch", "old")]}
