"""The OpenTelemetry SDK with in-memory exporters, installed once per test process.

The global tracer and meter providers can be set only once per process, so every test
module that asserts spans or metrics shares this one installation.
"""

from __future__ import annotations

from typing import Any

_installed: tuple[Any, Any] | None = None


def in_memory_telemetry() -> tuple[Any, Any]:
    """(InMemorySpanExporter, InMemoryMetricReader) behind the global providers."""
    global _installed
    if _installed is not None:
        return _installed
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    if trace.get_tracer_provider() is not tracer_provider:
        raise RuntimeError("another OpenTelemetry tracer provider was installed first in this process")
    _installed = (exporter, reader)
    return _installed


def metric_points(reader: Any, name: str) -> list[Any]:
    """Every data point of the metric `name` collected now (cumulative)."""
    data = reader.get_metrics_data()
    points = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    points += list(metric.data.data_points)
    return points


def metric_value(reader: Any, name: str, **attributes: str) -> float:
    """The sum of counter points (or histogram counts) whose attributes include `attributes`."""
    total = 0.0
    for p in metric_points(reader, name):
        if all(p.attributes.get(k) == v for k, v in attributes.items()):
            total += getattr(p, "value", None) if hasattr(p, "value") else p.count
    return total
