"""OpenTelemetry SDK set-up for the `dualsaver` command, from the standard OTEL_* variables.

The library only uses the OpenTelemetry API (dualsaver/telemetry.py); an application that
embeds a DualSaver configures its own SDK. The CLI does it here:

    OTEL_TRACES_EXPORTER        otlp | console | none   (comma-separated list allowed)
    OTEL_METRICS_EXPORTER       otlp | console | none
    OTEL_EXPORTER_OTLP_ENDPOINT e.g. http://localhost:4318 (OTLP over HTTP/protobuf)
    OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf (default) | grpc (needs the grpc exporter)
    OTEL_SERVICE_NAME           default "dualsaver"
    OTEL_SDK_DISABLED=true      configure nothing

When none of the first three is set nothing is configured (a CLI run should not try to
reach a collector nobody started). An exporter left unset defaults to `otlp` when an
endpoint is set, else `none`. If the OTLP exporter package is not installed, `otlp` falls
back to the console exporter (on stderr) and a warning says so. Console exporters write to
stderr so that `--json` output on stdout stays parseable.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("dualsaver.otel")

OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
)
_configured: Telemetry | None = None


@dataclass
class Telemetry:
    """What was configured; `shutdown()` flushes and stops the exporters."""

    traces: list[str] = field(default_factory=list)  # exporter names actually used
    metrics: list[str] = field(default_factory=list)
    tracer_provider: Any = None
    meter_provider: Any = None

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                with contextlib.suppress(Exception):
                    provider.shutdown()


def _names(value: str | None, default: str) -> list[str]:
    raw = value if value else default
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    return [n for n in names if n != "none"]


class _Stderr:
    """Resolves sys.stderr at each write, so a replaced stderr (tests) is honoured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _otlp(kind: str, env: Mapping[str, str]) -> Any | None:
    grpc = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").lower() == "grpc"
    package = "grpc" if grpc else "http"
    module = f"opentelemetry.exporter.otlp.proto.{package}.{'trace' if kind == 'traces' else 'metric'}_exporter"
    cls = "OTLPSpanExporter" if kind == "traces" else "OTLPMetricExporter"
    try:
        mod = __import__(module, fromlist=[cls])
    except ImportError:
        log.warning(
            "otlp_exporter_missing",
            signal=kind,
            hint=f"pip install opentelemetry-exporter-otlp-proto-{package}; using the console exporter",
        )
        return None
    return getattr(mod, cls)()


def _span_processors(names: list[str], env: Mapping[str, str]) -> tuple[list[Any], list[str]]:
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    processors: list[Any] = []
    used: list[str] = []
    for name in names:
        exporter = _otlp("traces", env) if name == "otlp" else None
        if exporter is not None:
            processors.append(BatchSpanProcessor(exporter))
            used.append("otlp")
        elif name in ("otlp", "console"):
            # a file-like proxy for sys.stderr, not a TextIO subclass
            processors.append(SimpleSpanProcessor(ConsoleSpanExporter(out=_Stderr())))  # type: ignore[arg-type]
            used.append("console")
        else:
            log.warning("unknown_otel_exporter", signal="traces", exporter=name)
    return processors, used


def _metric_readers(names: list[str], env: Mapping[str, str]) -> tuple[list[Any], list[str]]:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers, used = [], []
    for name in names:
        exporter = _otlp("metrics", env) if name == "otlp" else None
        if exporter is not None:
            used.append("otlp")
        elif name in ("otlp", "console"):
            exporter = ConsoleMetricExporter(out=_Stderr())  # type: ignore[arg-type]  # a file-like proxy
            used.append("console")
        else:
            log.warning("unknown_otel_exporter", signal="metrics", exporter=name)
            continue
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers, used


def configure_otel(environ: Mapping[str, str] | None = None) -> Telemetry | None:
    """Install the SDK's global tracer and meter providers as the OTEL_* variables say.

    Returns None when nothing was asked for. Once per process: the OpenTelemetry globals
    can be set only once, so a second call returns what the first configured.
    """
    global _configured
    env = os.environ if environ is None else environ
    if _configured is not None:
        return _configured
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    asked = [env.get(v) for v in OTEL_VARIABLES[:3]]
    if not any(asked):
        return None
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning("otel_sdk_missing", hint="pip install 'dualsaver[otel]'")
        return None
    from opentelemetry import metrics, trace

    default = "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    attributes = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = "dualsaver"
    resource = Resource.create(attributes)

    telemetry = Telemetry()
    processors, telemetry.traces = _span_processors(_names(env.get("OTEL_TRACES_EXPORTER"), default), env)
    if processors:
        telemetry.tracer_provider = TracerProvider(resource=resource)
        for p in processors:
            telemetry.tracer_provider.add_span_processor(p)
        trace.set_tracer_provider(telemetry.tracer_provider)
    readers, telemetry.metrics = _metric_readers(_names(env.get("OTEL_METRICS_EXPORTER"), default), env)
    if readers:
        telemetry.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(telemetry.meter_provider)
    atexit.register(telemetry.shutdown)
    _configured = telemetry
    return telemetry


def configure_cli() -> None:
    """What `dualsaver` does first: structlog with redaction, then the OTel SDK."""
    from dualsaver.observability.logs import configure_logging

    configure_logging(stream=_Stderr())  # type: ignore[arg-type]  # a file-like proxy
    configure_otel()


@contextlib.contextmanager
def command_span(command: str | None) -> Iterator[Any]:
    """A span around one CLI command (`dualsaver.cli.<command>`), with its exit code."""
    from opentelemetry import trace

    tracer = trace.get_tracer("dualsaver.cli")
    with tracer.start_as_current_span(f"dualsaver.cli.{command or 'help'}") as span:
        yield span
