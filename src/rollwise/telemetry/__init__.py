"""OpenTelemetry in: OTLP/HTTP bodies decoded (``decode.py``) and spans aggregated per service and
version into bounded per-second buckets (``aggregate.py``), which the ``otlp`` metric source
(``adapters/metrics/otlp.py``) reads as the judge's windows. Pure: no I/O; the routes are ``api/otlp.py``.
"""
