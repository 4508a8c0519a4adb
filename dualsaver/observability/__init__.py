"""Observability: OpenTelemetry instruments for the library (`telemetry`, API only), and the
set-up done once at the edge of the program: structlog with secrets redacted (`logs`) and
the OpenTelemetry SDK from the standard OTEL_* variables (`otel_setup`, for the CLI)."""
