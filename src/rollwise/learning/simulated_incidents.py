"""Simulated past incidents of known kinds, for the similar-incident benchmark and tests.

Six kinds, each with several ways an RCA can word it and numbers drawn per incident, so neither the
text nor the signature alone gives the kind away:

- ``endpoint-errors``: a bug in one endpoint, 5xx on that route only (rollbacks, a deploy);
- ``slow-dependency``: a downstream service got slow, latency on the routes that call it;
- ``memory-leak``: memory grows until restarts (mostly watch incidents; some GC latency);
- ``bad-config``: a flag or configuration value breaks requests on several routes (flag/config change);
- ``migration-lock``: a schema migration holds a table lock, writes slow down and time out;
- ``dependency-timeout``: calls to a dependency time out, errors (and some latency) on its routes.

Kinds overlap on purpose: slow-dependency, migration-lock and dependency-timeout all show latency on
routes that touch something else; endpoint-errors and bad-config both show errors; some incidents
have no per-route split (a source without ``http.route``), no change features (no culprit) or no
telling log line. Pure: a seed in, signatures out (``Signature.kind`` holds the truth).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rollwise.learning.incident_memory import (
    ABORTED,
    BY_ITSELF,
    FLAG_KILLED,
    ROLLED_BACK,
    UNDONE,
    Signature,
)

KINDS = ("endpoint-errors", "slow-dependency", "memory-leak", "bad-config", "migration-lock", "dependency-timeout")
SERVICES = ("checkout", "search", "accounts", "catalog", "payments-gw", "notifications")
READS = ("GET /products", "GET /products/{id}", "GET /search", "GET /cart", "GET /orders/{id}", "GET /profile")
WRITES = ("POST /orders", "PUT /cart/items", "POST /payments", "PATCH /profile", "POST /signup", "DELETE /cart/items")
ROUTES = READS + WRITES
DEPENDENCIES = ("pricing", "inventory", "recommendations", "payments", "fraud-check", "geo")
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _pct(rng: random.Random, low: float, high: float) -> float:
    return rng.uniform(low, high)


def _regressed_line(metric: str, canary: float, baseline: float) -> str:
    what = {"errorRate": "errors", "latency": "slower than the baseline p99"}.get(metric, "bad")
    return (f"  - {metric}: canary {canary * 100:.2f}% {what} vs baseline {baseline * 100:.2f}% "
            f"({(canary - baseline) * 100:+.2f} pp)")


def _route_line(rng: random.Random, route: str, how: str) -> str:
    n = rng.randint(300, 4000)
    if how == "errors":
        bad = rng.uniform(0.02, 0.3)
        return (f"  - {route}: canary {bad * 100:.2f}% ({int(n * bad)}/{n}) errors vs baseline 0.10%; "
                f"z {rng.uniform(4, 25):.1f}  <- errors regressed here")
    slow, base = rng.uniform(180, 2400), rng.uniform(20, 120)
    return (f"  - {route}: canary 0.20% errors vs baseline 0.10%; mean {slow:.0f} ms vs {base:.0f} ms"
            "  <- latency regressed here")


def _features(rng: random.Random, **fixed: float) -> dict[str, float]:
    """Risk features when the rollout was started with its change (``--repo``), about half the time;
    otherwise only the change's kind."""
    if rng.random() < 0.5:
        return {k: v for k, v in fixed.items() if k.startswith("kind:")}
    nf = rng.randint(1, 30)
    features = {"la": float(rng.randint(5, 900)), "ld": float(rng.randint(0, 400)), "nf": float(nf),
                "nd": float(rng.randint(1, max(1, nf // 2))), "exp": float(rng.randint(1, 400)),
                "fix": float(rng.random() < 0.3), "migrations": 0.0, "config": float(rng.random() < 0.2),
                "dependencies": float(rng.random() < 0.15)}
    features.update(fixed)
    return features


# ---------------------------------------------------------------- one builder per kind
# Each returns (metrics, routes, change features, why, log lines, change description, resolution).

Parts = tuple[dict[str, float], list[str], dict[str, float], str, list[str], str, str]


def _endpoint_errors(rng: random.Random) -> Parts:
    route = rng.choice(ROUTES)
    obj = rng.choice(("order", "cart", "user profile", "product", "invoice"))
    field = rng.choice(("currency", "shipping_address", "locale", "discount_code", "tax_id"))
    logs = rng.choice([
        [f"KeyError: '{field}' while serialising the {obj}"],
        [f"NullPointerException at {obj.title().replace(' ', '')}Serializer.write"],
        [f"TypeError: cannot read property '{field}' of undefined", f"unhandled exception in {route}"],
        [f"500 Internal Server Error: {route} failed to render the {obj}"],
        [],
    ])
    why = rng.choice([f"errorRate rolled back: e-value {rng.uniform(120, 9000):.0f} >= 100",
                      f"the new handler for {route} throws on {obj}s without {field}",
                      "canary error rate above the baseline's"])
    change = rng.choice([f"refactor {obj} serialisation", f"new {field} handling in {route}",
                         f"rewrite {obj} view", "code cleanup"])
    return ({"errorRate": rng.uniform(1.5, 4.5)}, [route], _features(rng, **{"kind:deploy": 1.0}), why, logs,
            change, ROLLED_BACK if rng.random() < 0.8 else ABORTED)


def _slow_dependency(rng: random.Random) -> Parts:
    dep = rng.choice(DEPENDENCIES)
    routes = rng.sample(READS, rng.randint(1, 3))
    ms = rng.randint(400, 3000)
    logs = rng.choice([
        [f"call to {dep}-service took {ms} ms"],
        [f"upstream {dep} responded slowly ({ms} ms, budget 200 ms)"],
        [f"HTTP client waited {ms} ms for the {dep} API"],
        [f"slow response from {dep}: p99 {ms} ms"],
        [],
    ])
    why = rng.choice([f"latency rolled back: e-value {rng.uniform(120, 5000):.0f} >= 100",
                      f"requests now wait on {dep}, which became slow",
                      "p99 latency regressed"])
    change = rng.choice([f"call {dep} synchronously for every request", f"upgrade the {dep} client",
                         f"add {dep} lookup to the page", "performance tweaks"])
    metrics = {"latency": rng.uniform(0.8, 2.5)}
    if rng.random() < 0.3:
        metrics["errorRate"] = rng.uniform(0.1, 0.6)
    return (metrics, routes, _features(rng, **{"kind:deploy": 1.0, "dependencies": float(rng.random() < 0.5)}),
            why, logs, change, ROLLED_BACK if rng.random() < 0.7 else UNDONE)


def _memory_leak(rng: random.Random) -> Parts:
    start, end = rng.randint(200, 500), rng.randint(900, 3800)
    logs = rng.choice([
        [f"RSS grew from {start} MB to {end} MB without levelling off"],
        ["OOMKilled: container exceeded its memory limit", "process restarted after out of memory"],
        [f"heap usage climbing steadily, full GC every {rng.randint(5, 60)} s"],
        ["java.lang.OutOfMemoryError: Java heap space"],
        [f"cache holds {rng.randint(1, 9)} million entries and never evicts"],
        [],
    ])
    why = rng.choice(["memory anomalous since onset", f"memory rose {end / start:.1f}x after the release",
                      "resident memory of the new version keeps growing"])
    change = rng.choice(["add an in-process cache for sessions", "keep request history for metrics",
                         "switch to a new JSON library", "batch writes in memory", "refactor"])
    metrics = {"memory": rng.uniform(0.6, 2.0)}
    if rng.random() < 0.3:
        metrics["latency"] = rng.uniform(0.2, 0.9)
    return (metrics, [], _features(rng, **{"kind:deploy": 1.0}) if rng.random() < 0.7 else {}, why, logs, change,
            rng.choice((UNDONE, UNDONE, BY_ITSELF, ROLLED_BACK)))


def _bad_config(rng: random.Random) -> Parts:
    name = rng.choice(("new-checkout", "fast-search", "v2-pricing", "dark-mode", "batch-mailer", "eu-routing"))
    setting = rng.choice(("max_connections", "retry_policy", "currency_table", "region_map", "timeout_ms"))
    routes = rng.sample(ROUTES, rng.randint(2, 5))
    logs = rng.choice([
        [f"feature '{name}' enabled for this request", f"invalid value for setting {setting}"],
        [f"missing configuration key {setting}"],
        [f"flag {name} variant 'on' raised an exception"],
        [f"could not parse {setting}: expected a number"],
        [],
    ])
    why = rng.choice([f"error rate jumped when flag {name} was switched on",
                      f"errorRate anomalous since the {setting} change", "errors across several endpoints"])
    flag = rng.random() < 0.6
    kind = "kind:flag" if flag else "kind:config"
    change = f"turn on {name}" if flag else f"set {setting}"
    metrics = {"errorRate": rng.uniform(1.0, 3.5)}
    if rng.random() < 0.25:
        metrics["latency"] = rng.uniform(0.2, 0.8)
    return (metrics, routes if rng.random() < 0.7 else [], {kind: 1.0, "config": 1.0}, why, logs, change,
            FLAG_KILLED if flag else rng.choice((UNDONE, ROLLED_BACK)))


def _migration_lock(rng: random.Random) -> Parts:
    table = rng.choice(("orders", "users", "carts", "payments", "sessions", "line_items"))
    routes = rng.sample(WRITES, rng.randint(1, 3))
    logs = rng.choice([
        [f"lock wait timeout exceeded; try restarting transaction ({table})"],
        [f"could not obtain lock on relation \"{table}\""],
        ["canceling statement due to statement timeout", f"ALTER TABLE {table} waiting for AccessExclusiveLock"],
        [f"deadlock detected while updating {table}"],
        [],
    ])
    why = rng.choice([f"writes to {table} blocked while the migration ran",
                      f"latency rolled back: e-value {rng.uniform(120, 5000):.0f} >= 100",
                      f"the schema change on {table} locked the table"])
    change = rng.choice([f"add an index on {table}", f"add a NOT NULL column to {table}",
                         f"migrate {table} to the new schema", "database housekeeping"])
    metrics = {"latency": rng.uniform(1.0, 3.0)}
    if rng.random() < 0.6:
        metrics["errorRate"] = rng.uniform(0.5, 2.5)
    return (metrics, routes, _features(rng, **{"kind:deploy": 1.0, "migrations": 1.0}), why, logs, change,
            ROLLED_BACK if rng.random() < 0.6 else BY_ITSELF)


def _dependency_timeout(rng: random.Random) -> Parts:
    dep = rng.choice(DEPENDENCIES)
    routes = rng.sample(ROUTES, rng.randint(1, 3))
    logs = rng.choice([
        [f"ReadTimeout calling {dep} after 5000 ms"],
        ["upstream request timeout (504)", f"retrying {dep}"],
        [f"circuit breaker open for {dep}"],
        [f"context deadline exceeded talking to {dep}"],
        [],
    ])
    why = rng.choice([f"errorRate rolled back: e-value {rng.uniform(120, 9000):.0f} >= 100",
                      f"calls to {dep} time out", "gateway timeouts on the canary"])
    change = rng.choice([f"lower the {dep} client timeout", f"route {dep} calls through the new proxy",
                         f"new {dep} endpoint", "network settings"])
    metrics = {"errorRate": rng.uniform(1.0, 3.5)}
    if rng.random() < 0.5:
        metrics["latency"] = rng.uniform(0.5, 1.8)
    features = _features(rng, **{"kind:deploy": 1.0}) if rng.random() < 0.6 else {"kind:infra": 1.0}
    return (metrics, routes if rng.random() < 0.8 else [], features, why, logs, change,
            rng.choice((ROLLED_BACK, ROLLED_BACK, BY_ITSELF, UNDONE)))


BUILDERS: dict[str, Callable[[random.Random], Parts]] = {
    "endpoint-errors": _endpoint_errors, "slow-dependency": _slow_dependency, "memory-leak": _memory_leak,
    "bad-config": _bad_config, "migration-lock": _migration_lock, "dependency-timeout": _dependency_timeout,
}


def _text(rng: random.Random, service: str, watch: bool, metrics: dict[str, float], route_lines: list[str],
          why: str, logs: list[str], change: str) -> str:
    """An RCA worded like ``report/rca.py`` (a rollback) or ``watch/render.py`` (an incident)."""
    if watch:
        metric = max(metrics, key=lambda m: metrics[m])
        lines = [f"incident on {service}", f"metric: {metric}",
                 f"culprit: deploy of {service}: {change} (confidence {rng.uniform(0.4, 0.99):.2f})", f"why: {why}"]
    else:
        lines = [f"Why: {why}", "Regressed:"]
        for metric, effect in metrics.items():
            base = rng.uniform(0.001, 0.01)
            lines.append(_regressed_line(metric, base * pow(2.718, effect), base))
        if route_lines:
            lines += ["Where (per route, canary vs baseline):", *route_lines]
        lines.append(f"Change: {change}")
    if logs:
        lines.append("Logs (templates new or rising in the canary):")
        lines += [f"  - new in the canary: {t!r} ({rng.randint(5, 900)} records)" for t in logs]
    return "\n".join(lines)


def simulate_incidents(per_kind: int = 10, seed: int = 0) -> list[Signature]:
    """``per_kind`` incidents of each of ``KINDS``, in time order, with their kind as ``Signature.kind``."""
    rng = random.Random(seed)
    plan = [kind for kind in KINDS for _ in range(per_kind)]
    rng.shuffle(plan)
    out = []
    for index, kind in enumerate(plan):
        metrics, routes, change, why, logs, description, resolution = BUILDERS[kind](rng)
        watch = (kind == "memory-leak" and rng.random() < 0.8) or rng.random() < 0.15
        service = rng.choice(SERVICES)
        split = [] if watch or not routes or rng.random() < 0.25 else routes
        how = "latency" if "latency" in metrics and ("errorRate" not in metrics or rng.random() < 0.5) else "errors"
        route_lines = [_route_line(rng, r, how) for r in split]
        if watch:  # a watch incident sees one metric, no routes
            top = max(metrics, key=lambda m: metrics[m])
            metrics = {top: metrics[top]}
        text = _text(rng, service, watch, metrics, route_lines, why, logs, description)
        at = START + index * 3600.0 * rng.uniform(5, 30)
        ident = f"incident:{index + 1}" if watch else f"rollout:{service}-{index + 1}#1"
        out.append(Signature(id=ident, source="incident" if watch else "rollback", service=service, at=at,
                             metrics={k: round(v, 3) for k, v in metrics.items()}, routes=tuple(split),
                             change=change, resolution=resolution, text=text,
                             title=f"{service}: {why}", kind=kind))
    out.sort(key=lambda s: s.at)
    return out
