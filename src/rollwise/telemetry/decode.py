"""OTLP/HTTP request bodies into the official ``opentelemetry-proto`` messages, in both encodings the
OTLP specification defines (https://opentelemetry.io/docs/specs/otlp/#otlphttp):

* ``application/x-protobuf``: the binary protobuf of ``Export{Trace,Logs,Metrics}ServiceRequest``;
* ``application/json``: protobuf's JSON mapping with two OTLP-specific rules: trace and span ids are
  hex strings (not base64), and enums are integers. Field names may be lowerCamelCase or snake_case.

Either may be gzip-compressed (``Content-Encoding: gzip``). A body that does not decode is a
``DecodeError`` with one line saying why (the route answers 400).
"""

from __future__ import annotations

import base64
import functools
import json
import zlib
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@functools.cache
def protos_problem() -> str | None:
    """Why OTLP cannot be read in this environment, in one line; None when it can.

    ``xds-protos`` (the ADS server's Envoy messages) ships an older copy of ``opentelemetry/proto``; installed
    after ``opentelemetry-proto`` it replaces those files, and every OTLP request would then fail deep in
    the decoder (``scope_spans``). Said once, with the command that repairs the environment.
    """
    try:
        from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope  # noqa: F401
    except ImportError:
        from importlib.metadata import PackageNotFoundError, version

        try:
            pinned = f"=={version('opentelemetry-proto')}"
        except PackageNotFoundError:
            pinned = ""
        return ("OTLP disabled: opentelemetry-proto's files were replaced by an older copy (xds-protos ships one); "
                f"repair with: pip install --force-reinstall --no-deps 'opentelemetry-proto{pinned}'")
    return None


Signal = Literal["traces", "logs", "metrics"]
REQUESTS: dict[str, type[Message]] = {"traces": ExportTraceServiceRequest, "logs": ExportLogsServiceRequest,
                                      "metrics": ExportMetricsServiceRequest}
RESPONSES: dict[str, type[Message]] = {"traces": ExportTraceServiceResponse, "logs": ExportLogsServiceResponse,
                                       "metrics": ExportMetricsServiceResponse}
PROTOBUF, JSON = "application/x-protobuf", "application/json"
_HEX_IDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
MAX_INFLATED = 64 << 20  # a gzip bomb stops here


class DecodeError(ValueError):
    """An OTLP body that cannot be read, in one line."""


def media_type(content_type: str | None) -> str | None:
    """``PROTOBUF`` or ``JSON`` for a Content-Type header (parameters ignored); None for anything else."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind if kind in (PROTOBUF, JSON) else None


def inflate(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding.strip().lower() == "identity":
        return body
    if encoding.strip().lower() != "gzip":
        raise DecodeError(f"Content-Encoding {encoding[:40]!r} is not supported (gzip or none)")
    try:
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_INFLATED)
    except zlib.error as exc:
        raise DecodeError(f"not gzip: {exc}") from None
    if len(out) >= MAX_INFLATED:
        raise DecodeError(f"inflates past {MAX_INFLATED >> 20} MiB")
    return out


def decode(signal: Signal, body: bytes, kind: str) -> Message:
    """The ``Export*ServiceRequest`` of ``signal`` in ``body`` (``kind``: ``PROTOBUF`` or ``JSON``)."""
    message = REQUESTS[signal]()
    if kind == PROTOBUF:
        try:
            message.ParseFromString(body)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"not an OTLP {signal} protobuf: {exc}") from None
        return message
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"an OTLP {signal} JSON body is an object")
    try:
        json_format.ParseDict(_ids_to_base64(data), message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise DecodeError(f"not OTLP {signal} JSON: {' '.join(str(exc).split())[:200]}") from None
    return message


def encode_response(signal: Signal, kind: str) -> bytes:
    """The (empty: everything accepted) ``Export*ServiceResponse`` in the request's encoding."""
    response = RESPONSES[signal]()
    return response.SerializeToString() if kind == PROTOBUF else json_format.MessageToJson(response).encode()


def _ids_to_base64(node: Any) -> Any:
    """OTLP JSON's hex ids as the base64 protobuf's JSON mapping reads for ``bytes`` fields."""
    if isinstance(node, dict):
        return {key: _hex_id(value) if key in _HEX_IDS and isinstance(value, str) else _ids_to_base64(value)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_ids_to_base64(item) for item in node]
    return node


def _hex_id(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise DecodeError(f"id {value[:40]!r} is not hex (OTLP JSON writes trace and span ids in hex)") from None
