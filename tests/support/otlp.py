"""OTLP/JSON bodies written by hand from the OTLP specification, for the ingest tests."""

from __future__ import annotations

import json
import time


def json_body(version: str, spans: int, error_every: int, service: str = "shop",
              routes: tuple[str, ...] = ("/cart",)) -> bytes:
    """An OTLP/JSON traces body as the specification writes it (hex ids, integer enums, lowerCamelCase):
    ``spans`` SERVER spans of 30 ms of ``service`` at ``version`` that saw flag ``new-cart`` on, every
    ``error_every``-th with status ERROR, their ``http.route`` taken in turn from ``routes``."""
    now = time.time_ns()
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}},
                                    {"key": "service.version", "value": {"stringValue": version}}]},
        "scopeSpans": [{"scope": {"name": "by-hand"}, "spans": [{
            "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": str(now - 30_000_000), "endTimeUnixNano": str(now),
            "attributes": [{"key": "http.route", "value": {"stringValue": routes[i % len(routes)]}},
                           {"key": "feature_flag.key", "value": {"stringValue": "new-cart"}},
                           {"key": "feature_flag.result.variant", "value": {"stringValue": "on"}}],
            "status": {"code": 2 if i % error_every == 0 else 0},
        } for i in range(spans)]}],
    }]}).encode()


def json_logs(version: str, lines: list[str], service: str = "shop") -> bytes:
    """An OTLP/JSON logs body: one record per line, observed now."""
    now = str(time.time_ns())
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}},
                                    {"key": "service.version", "value": {"stringValue": version}}]},
        "scopeLogs": [{"scope": {"name": "by-hand"}, "logRecords": [
            {"timeUnixNano": now, "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": line}}
            for line in lines]}],
    }]}).encode()
