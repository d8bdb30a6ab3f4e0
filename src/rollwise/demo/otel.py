"""The demo service's OpenTelemetry: spans and logs exported over OTLP/HTTP (protobuf) with the official
Python SDK, so ``rollwise serve`` can judge it from spans, split it per route and mine its logs.

Optional (``pip install 'rollwise[otel]'``): the service itself stays stdlib-only without it. Each request
is a SERVER span ``GET <route>`` (``http.route``, ``http.response.status_code``, status ERROR on a 5xx)
with a child ``handle <route>`` span holding the added latency; a request failed by the fault dial gets a
child ``payment gateway`` span with status ERROR and an ERROR log line ``payment gateway timeout after N
ms for order M``; every request logs ``served <route> for user N`` at INFO. The resource carries
``service.name`` and ``service.version``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

GATEWAY_TIMEOUT_MS = 3000
GATEWAY_JITTER_MS = 400  # a real client's timer fires late by a varying amount: the logged wait varies

MISSING = ("--otlp-endpoint needs the OpenTelemetry SDK: pip install 'rollwise[otel]' "
           "(opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http)")


class OtlpExport:
    """Spans and logs of one demo service version, batched to ``endpoint`` (``/v1/traces``, ``/v1/logs``)."""

    def __init__(self, endpoint: str, service: str, version: str, headers: dict[str, str] | None = None) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise RuntimeError(MISSING) from None
        base = endpoint.rstrip("/")
        resource = Resource.create({"service.name": service, "service.version": version})
        self._traces = TracerProvider(resource=resource)
        self._traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{base}/v1/traces", headers=headers),
                                                           schedule_delay_millis=200, max_queue_size=8192))
        self._logs = LoggerProvider(resource=resource)
        self._logs.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(f"{base}/v1/logs", headers=headers), schedule_delay_millis=200, max_queue_size=8192))
        self.tracer = self._traces.get_tracer("rollwise.demo")
        self.logger = self._logs.get_logger("rollwise.demo")
        self._orders = itertools.count(1)
        self._jitter = random.Random()

    @contextmanager
    def request(self, route: str) -> Iterator[Any]:
        """The SERVER span of one request; ``finish`` it with the status code before the block ends."""
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER,
                                               attributes={"http.route": route}) as span:
            yield span

    @contextmanager
    def handling(self, route: str) -> Iterator[None]:
        with self.tracer.start_as_current_span(f"handle {route}"):
            yield

    def fail(self, route: str, started: float) -> None:
        """The fault as the instrumented code would see it: a failed downstream call and its error log."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        order = next(self._orders)
        with self.tracer.start_as_current_span("payment gateway", kind=SpanKind.CLIENT) as span:
            span.set_status(Status(StatusCode.ERROR, "timeout"))
        # The wait varies from line to line as a real one does, so the lines share one template with the wait
        # as a parameter (``<*> ms``) however quickly this machine answers.
        waited = int((time.monotonic() - started) * 1000) + GATEWAY_TIMEOUT_MS \
            + self._jitter.randrange(GATEWAY_JITTER_MS)
        self._log(f"payment gateway timeout after {waited} ms for order {order}", error=True)

    def finish(self, span: Any, route: str, status: int, user: int) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        self._log(f"served {route} for user {user}", error=False)

    def _log(self, line: str, error: bool) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber

        self.logger.emit(LogRecord(body=line, severity_number=SeverityNumber.ERROR if error else SeverityNumber.INFO,
                                   severity_text="ERROR" if error else "INFO"))

    def shutdown(self) -> None:
        self._traces.shutdown()
        self._logs.shutdown()
