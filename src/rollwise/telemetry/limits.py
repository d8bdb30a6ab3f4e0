"""How much of each service's OTLP telemetry ``rollwise serve`` keeps: retention and sampling per service.

**Retention** (default 1 h): a service's per-second buckets (counts, per-route split, log template counts,
saturation gauges) and the exemplar traces a judged window linked are dropped once older than it; spans,
logs and metric points older than it on arrival are not counted. So a (service, version) series holds at
most ``retention + 2 min`` buckets, and the server at most ``max_series`` (1000) series.

**Sampling** (default 1, everything): the share of a service's traces that are counted, chosen by trace id
the way OpenTelemetry's ``TraceIdRatioBased`` sampler chooses (the low 8 bytes against ``rate · 2^64``), so a
trace is kept or skipped whole, in every export, and an SDK sampling at the same rate keeps the same traces.
A log record follows its trace's choice; one without a trace id is kept at the same rate, systematically.
The choice does not depend on the outcome, so error rates and latency quantiles stay unbiased; counts are
the sample's (``minSamples`` counts sampled requests). Metric points are not sampled.

Set on the command line (``rollwise serve --otlp-retention 30m --otlp-retention checkout=6h --otlp-sample
search=0.1``): a bare value is the default for every service, ``SERVICE=VALUE`` one service's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from rollwise.core.units import format_duration, parse_duration

DEFAULT_RETENTION_S = 3600.0
MIN_RETENTION_S = 60.0  # a judged window is read seconds after it ends; less could drop it first
_SAMPLE_SCALE = 1 << 64


@dataclass(frozen=True)
class ServiceLimits:
    retention_s: float = DEFAULT_RETENTION_S
    sample: float = 1.0  # share of traces counted

    def keeps_trace(self, trace_id: bytes) -> bool:
        """Whether a trace is in the sample: its low 8 bytes below ``sample · 2^64`` (``TraceIdRatioBased``)."""
        if self.sample >= 1.0:
            return True
        return int.from_bytes(trace_id[-8:], "big") < self.sample * _SAMPLE_SCALE

    def text(self) -> str:
        sample = "all traces" if self.sample >= 1.0 else f"{self.sample:g} of traces"
        return f"kept {format_duration(self.retention_s)}, {sample}"


@dataclass(frozen=True)
class TelemetryLimits:
    default: ServiceLimits = field(default_factory=ServiceLimits)
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # service -> field -> value

    def of(self, service: str) -> ServiceLimits:
        changes = self.overrides.get(service)
        return replace(self.default, **changes) if changes else self.default

    @property
    def services(self) -> dict[str, ServiceLimits]:
        """The services with a limit of their own."""
        return {name: self.of(name) for name in self.overrides}

    @property
    def longest_retention_s(self) -> float:
        return max([self.default.retention_s, *(s.retention_s for s in self.services.values())])

    def with_retention(self, setting: str) -> TelemetryLimits:
        """``DURATION`` (every service) or ``SERVICE=DURATION``; ValueError naming what is wrong."""
        service, value = _split(setting, "--otlp-retention")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"--otlp-retention {setting!r}: {exc}") from None
        if seconds < MIN_RETENTION_S:
            raise ValueError(f"--otlp-retention {setting!r}: at least {MIN_RETENTION_S:g}s (windows are read "
                             "after they end)")
        return self._set(service, "retention_s", seconds)

    def with_sample(self, setting: str) -> TelemetryLimits:
        """``RATE`` (every service) or ``SERVICE=RATE``, a share in (0, 1]; ValueError naming what is wrong."""
        service, value = _split(setting, "--otlp-sample")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"--otlp-sample {setting!r}: a share of traces in (0, 1], e.g. 0.1")
        return self._set(service, "sample", rate)

    def _set(self, service: str | None, name: str, value: float) -> TelemetryLimits:
        if service is None:  # the default; what was set per service stays, whatever the order
            return TelemetryLimits(replace(self.default, **{name: value}), self.overrides)
        return TelemetryLimits(self.default, {**self.overrides, service: {**self.overrides.get(service, {}),
                                                                           name: value}})

    def text(self) -> str:
        """The bounds in one line, as ``rollwise serve`` states them when it starts."""
        parts = [f"every service: {self.default.text()}"]
        parts += [f"{name}: {limits.text()}" for name, limits in sorted(self.services.items())]
        return "OTLP telemetry " + "; ".join(parts)


def _split(setting: str, option: str) -> tuple[str | None, str]:
    if "=" not in setting:
        return None, setting.strip()
    service, value = (part.strip() for part in setting.split("=", 1))
    if not service:
        raise ValueError(f"{option} {setting!r}: the service name before '=' is empty")
    return service, value
