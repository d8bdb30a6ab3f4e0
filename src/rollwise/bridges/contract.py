"""What Argo Rollouts and Flagger send, read into one ``BridgeRequest``: which two versions, which
Prometheus and PromQL, which analysis. Pure: no I/O, every mistake a ``BridgeError`` naming the field.

Argo Rollouts' ``web`` metric provider sends GET (query parameters rendered from the AnalysisTemplate's
``url``) or POST/PUT (a ``jsonBody``/``body``), with the template's ``headers``
(https://argoproj.github.io/argo-rollouts/analysis/web/). Flagger POSTs
``{"name", "namespace", "phase", "checksum", "type", "metadata": {string: string}}`` to each webhook and reads
only the status: 2xx passes (https://docs.flagger.app/usage/webhooks). Both carry the same parameters:

=================  ======================================================================  =================
parameter          meaning                                                                 default
=================  ======================================================================  =================
``baseline``       the stable version, as ``{version}`` in the PromQL                       (required)
``canary``         the new version                                                          (required)
``run``            Argo: which analysis the call belongs to (windows accumulate per run)    baseline->canary
``prometheus``     Prometheus base URL (the server's ``--allow-url`` rules apply)           127.0.0.1:9090
``requests`` …     PromQL templates ``requests``/``errors``/``latency_buckets``/            Envoy's names
                   ``latency_sum`` with ``{version}`` and ``{window}``
``errorRate``      SLO on the canary's error rate, e.g. ``1%``                              ``1%``
``maxIncrease``    tolerated error-rate increase over the baseline, e.g. ``0.5%``           none
``latencyP99``     SLO on the canary's p99, e.g. ``500ms``                                  none
``judge``          ``sequential`` or ``threshold``                                          ``sequential``
``alpha``          tolerated false-rollback probability (sequential)                        ``0.01``
``minSamples``     canary requests before a ``promote`` verdict                             ``100``
``lookback``       the first call's window (later ones: since the previous call)            ``60s``
=================  ======================================================================  =================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rollwise.core.units import parse_duration
from rollwise.spec.models import AnalysisSpec, MetricSpec

QUERY_NAMES = ("requests", "errors", "latency_buckets", "latency_sum")
DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
FLAGGER_HOOKS = ("confirm-rollout", "pre-rollout", "rollout", "confirm-promotion")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")  # safe inside a PromQL string literal
_MAX_TEXT = 2000
PARAMETERS = frozenset({"baseline", "canary", "run", "prometheus", *QUERY_NAMES, "errorRate", "maxIncrease",
                        "latencyP99", "judge", "alpha", "minSamples", "lookback"})


class BridgeError(ValueError):
    """A request rollwise cannot act on: ``field: why`` in one line (HTTP 400)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


@dataclass(frozen=True)
class BridgeRequest:
    session: str  # where the windows of this analysis accumulate (the store's key)
    baseline: str
    canary: str
    prometheus: str
    queries: dict[str, str]
    analysis: AnalysisSpec
    lookback_s: float


@dataclass(frozen=True)
class FlaggerCall:
    hook: str
    name: str
    namespace: str
    phase: str
    checksum: str
    request: BridgeRequest


def _text(params: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BridgeError(name, f"must be a string, not {type(value).__name__}")
    text = str(value).strip()
    if len(text) > _MAX_TEXT:
        raise BridgeError(name, f"longer than {_MAX_TEXT} characters")
    return text


def _version(params: Mapping[str, Any], name: str) -> str:
    value = _text(params, name)
    if not value:
        raise BridgeError(name, "required: the version name as it appears in the metrics (e.g. a pod template hash)")
    if not _VERSION.match(value):
        raise BridgeError(name, f"{value[:60]!r} is not a version name (letters, digits and ._:/@+- only)")
    return value


def _analysis(params: Mapping[str, Any]) -> AnalysisSpec:
    error_metric: dict[str, Any] = {"name": "error-rate", "type": "errorRate",
                                    "slo": f"< {_text(params, 'errorRate', '1%')}"}
    metrics = [_metric(error_metric, "errorRate")]
    if (increase := _text(params, "maxIncrease")) is not None:  # checked apart, so a mistake names it
        metrics[0] = _metric({**error_metric, "maxIncrease": increase}, "maxIncrease")
    if (latency := _text(params, "latencyP99")) is not None:
        metrics.append(_metric({"name": "latency-p99", "type": "latency", "quantile": 0.99, "slo": f"< {latency}"},
                               "latencyP99"))
    fields: dict[str, Any] = {"metrics": metrics, "minStageTime": 0, "maxStageTime": 86400, "baselineHistory": 0,
                              "onInconclusive": "hold"}
    for name in ("judge", "alpha", "minSamples"):
        if (value := _text(params, name)) is not None:
            fields[name] = value
    if fields.get("judge") == "kayenta":
        raise BridgeError("judge", "kayenta needs bucketed history; use sequential or threshold")
    try:
        return AnalysisSpec.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise BridgeError(str(error["loc"][0]) if error["loc"] else "analysis", _message(error)) from None


def _metric(fields: dict[str, Any], param: str) -> MetricSpec:
    """One metric; a mistake is named by ``param``, the parameter that set what was just added."""
    try:
        return MetricSpec.model_validate(fields)
    except ValidationError as exc:
        raise BridgeError(param, _message(exc.errors()[0])) from None


def _message(error: Any) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def bridge_request(params: Mapping[str, Any], default_session: str | None = None) -> BridgeRequest:
    """The parameters of one Argo or Flagger call (query string and body merged) as a request."""
    unknown = sorted(str(k) for k in params if k not in PARAMETERS)
    if unknown:  # a misspelt threshold must not fall back to the default silently
        raise BridgeError(unknown[0][:60], f"unknown parameter; known: {', '.join(sorted(PARAMETERS))}")
    baseline, canary = _version(params, "baseline"), _version(params, "canary")
    queries = {name: q for name in QUERY_NAMES if (q := _text(params, name))}
    for name, query in queries.items():
        if "{version}" not in query:
            raise BridgeError(name, "a PromQL template needs {version} (and usually [{window}])")
    lookback_text = _text(params, "lookback", "60s") or "60s"
    try:
        lookback = parse_duration(lookback_text)
    except ValueError as exc:
        raise BridgeError("lookback", str(exc)) from None
    if not 1 <= lookback <= 86400:
        raise BridgeError("lookback", "must be between 1s and 24h")
    session = _text(params, "run") or default_session or f"{baseline}->{canary}"
    return BridgeRequest(session=session[:200], baseline=baseline, canary=canary,
                         prometheus=_text(params, "prometheus") or DEFAULT_PROMETHEUS, queries=queries,
                         analysis=_analysis(params), lookback_s=lookback)


def flagger_call(hook: str, body: Any) -> FlaggerCall:
    """A Flagger webhook call: its payload, with the parameters in ``metadata`` (all strings)."""
    if hook not in FLAGGER_HOOKS:
        raise BridgeError("hook", f"{hook[:40]!r} is not one rollwise answers ({', '.join(FLAGGER_HOOKS)})")
    if not isinstance(body, dict):
        raise BridgeError("body", "must be Flagger's JSON object {name, namespace, phase, checksum, metadata}")
    fields = {}
    for name in ("name", "namespace", "phase", "checksum"):
        value = body.get(name, "")
        if not isinstance(value, str):
            raise BridgeError(name, "must be a string")
        fields[name] = value[:253]
    if not fields["name"] or not fields["namespace"]:
        raise BridgeError("name" if not fields["name"] else "namespace", "required (Flagger always sends it)")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BridgeError("metadata", "must be an object of strings")
    session = f"flagger:{fields['namespace']}/{fields['name']}:{fields['checksum']}"
    if "run" in metadata:
        raise BridgeError("run", "Flagger's analyses are named by the canary and its checksum; drop run")
    request = bridge_request({k: v for k, v in metadata.items() if k != "token"}, session)
    return FlaggerCall(hook=hook, request=request, **fields)
