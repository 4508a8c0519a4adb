"""OpenTelemetry instruments for the library: API only, so the application picks the SDK.

Every DualSaver operation is a span (`dualsaver.<operation>`, with the phase as an
attribute) and every store call a child span (`dualsaver.store.<method>`, with the store's
role). Metrics: operations by store and outcome, their latency, secondary failures,
shadow-read mismatches, journal depth, backfill progress and divergences found.
Without an SDK configured the composite savers skip them (`listening`).
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

tracer = trace.get_tracer("dualsaver")
meter = metrics.get_meter("dualsaver")

try:  # the API's stand-in until an SDK is installed; not exported publicly
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _ProxyMeters
except ImportError:  # pragma: no cover - a future API: treat metrics as always listening
    _ProxyMeters = ()  # type: ignore[assignment,misc]
_SILENT_TRACES = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_SILENT_METRICS = (_ProxyMeters, metrics.NoOpMeterProvider)


_heard = False  # an SDK was installed: it stays (the API lets a provider be set only once)

# The API's getters look the provider's environment variable up on every call until a
# provider is set (about 1 us each, twice an operation). Unless that variable was set
# when this module loaded, its globals say "nothing set yet" without the lookup.
_metrics_state: Any = None
try:
    from opentelemetry.metrics import _internal as _metrics_state

    _unset = (trace._TRACER_PROVIDER, _metrics_state._METER_PROVIDER) == (None, None) and not (
        {"OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"} & set(os.environ)
    )
except (ImportError, AttributeError):  # pragma: no cover - a future API: ask the getters
    _unset = False


def _nothing_set() -> bool:
    return _unset and trace._TRACER_PROVIDER is None and _metrics_state._METER_PROVIDER is None


def listening() -> bool:
    """Whether an SDK receives our spans or metrics. Without one, the API's no-op spans,
    their attribute dicts and context switches still cost several microseconds a store
    call on LangGraph's hot path, so the composite savers ask this once per call
    (`saver._shells.Operation.traced`) and skip the per-call instruments outright. The span
    helpers below trace unconditionally: the caller has decided."""
    global _heard
    if not _heard and not _nothing_set():
        _heard = not (
            isinstance(trace.get_tracer_provider(), _SILENT_TRACES)
            and isinstance(metrics.get_meter_provider(), _SILENT_METRICS)
        )
    return _heard


operations = meter.create_counter(
    "dualsaver.store.operations", unit="{operation}", description="Store calls by store, method and outcome"
)
latency = meter.create_histogram(
    "dualsaver.store.duration", unit="s", description="Store call latency by store and method"
)
secondary_failures = meter.create_counter(
    "dualsaver.secondary.failures", unit="{write}", description="Secondary writes that failed and were journaled"
)
shadow_mismatches = meter.create_counter(
    "dualsaver.shadow_read.mismatches", unit="{read}", description="Shadow reads whose answer differed from old's"
)
_journals: weakref.WeakSet[Any] = weakref.WeakSet()


def _journal_depths(options: Any) -> Iterator[metrics.Observation]:
    for journal in list(_journals):
        try:
            yield metrics.Observation(journal.depth(), {"journal": str(journal.path or ":memory:")})
        except Exception:
            continue


journal_depth = meter.create_observable_gauge(
    "dualsaver.journal.depth",
    callbacks=[_journal_depths],
    unit="{entry}",
    description="Journal entries waiting for repair (read from the journal, so repairs count)",
)


def watch_journal(journal: Any) -> None:
    """Report this journal's depth with the metrics (held weakly: closing it is enough)."""
    _journals.add(journal)


backfill_checkpoints = meter.create_counter(
    "dualsaver.backfill.checkpoints", unit="{checkpoint}", description="Checkpoints copied by the backfill"
)
backfill_threads = meter.create_counter(
    "dualsaver.backfill.threads", unit="{thread}", description="Threads finished by the backfill"
)
tier_events = meter.create_counter(
    "dualsaver.tier.events", description="tiered reads (hit, miss, stale) and warm-ups (warmed, warm_failed)"
)
circuit_transitions = meter.create_counter(
    "dualsaver.secondary.circuit", unit="{transition}", description="Circuit breaker transitions, by new state"
)
throttled = meter.create_counter(
    "dualsaver.throttle.waited", unit="s", description="Seconds long jobs waited for their throttle, by reason"
)
divergences = meter.create_counter(
    "dualsaver.check.divergences", unit="{divergence}", description="Divergences reported by the check, by kind"
)


def _operation_attributes(phase: str, thread_id: str | None) -> dict[str, str]:
    attributes = {"dualsaver.phase": phase}
    if thread_id is not None:
        attributes["dualsaver.thread_id"] = thread_id
    return attributes


def _store_attributes(role: str, method: str, phase: str) -> dict[str, str]:
    return {"dualsaver.store": role, "dualsaver.method": method, "dualsaver.phase": phase}


@contextlib.contextmanager
def operation_span(operation: str, phase: str, thread_id: str | None) -> Iterator[Any]:
    attributes = _operation_attributes(phase, thread_id)
    with tracer.start_as_current_span(f"dualsaver.{operation}", attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def store_span(role: str, method: str, phase: str) -> Iterator[Any]:
    """A child span and the metrics for one call to one store."""
    started = time.perf_counter()
    outcome = "ok"
    attributes = _store_attributes(role, method, phase)
    with tracer.start_as_current_span(f"dualsaver.store.{method}", attributes=attributes) as span:
        try:
            yield span
        except BaseException as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            span.set_attribute("dualsaver.outcome", outcome)
            raise
        finally:
            labels = {"store": role, "method": method, "outcome": outcome}
            operations.add(1, labels)
            latency.record(time.perf_counter() - started, {"store": role, "method": method})


@contextlib.contextmanager
def detached_span(operation: str, phase: str, thread_id: str | None) -> Iterator[Any]:
    """An operation span that is not made current: for generators, which must not leave a
    context attached across a `yield` (the caller's code runs in between)."""
    span = tracer.start_span(f"dualsaver.{operation}", attributes=_operation_attributes(phase, thread_id))
    try:
        yield span
    finally:
        span.end()


_AS_IT_IS = contextlib.nullcontext()  # stateless: one serves every block


def attached(span: Any) -> Any:
    """Make `span` current for a block that does not yield (None: leave the context as it is)."""
    return _AS_IT_IS if span is None else trace.use_span(span, end_on_exit=False)


def _stream_span(parent: Any, role: str, phase: str) -> Any:
    """A child span of `parent` for a store's list(), not made current (see detached_span)."""
    context = trace.set_span_in_context(parent) if parent is not None else None
    return tracer.start_span("dualsaver.store.list", context=context, attributes=_store_attributes(role, "list", phase))


def streamed(items: Iterator[Any], parent: Any, role: str, phase: str) -> Iterator[Any]:
    """`items` (a store's list()), with a span open until they run out or are dropped."""
    return _spanned(items, _stream_span(parent, role, phase))


def astreamed(items: AsyncIterator[Any], parent: Any, role: str, phase: str) -> AsyncIterator[Any]:
    """The same for an async iterator."""
    return _aspanned(items, _stream_span(parent, role, phase))


def _spanned(items: Iterator[Any], span: Any) -> Iterator[Any]:
    try:
        yield from items
    finally:
        span.end()


async def _aspanned(items: AsyncIterator[Any], span: Any) -> AsyncIterator[Any]:
    try:
        async for item in items:
            yield item
    finally:
        span.end()


def capture() -> Any:
    """The current tracing context, to continue in another thread."""
    return otel_context.get_current()


@contextlib.contextmanager
def continued(captured: Any) -> Iterator[None]:
    """Run a block in a context captured by `capture()` (in a background thread)."""
    if captured is None:
        yield
        return
    token = otel_context.attach(captured)
    try:
        yield
    finally:
        otel_context.detach(token)
