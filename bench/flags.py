"""Feature-flag evaluation speed: rollwise vs in-process peers, side by side in one run.

Three flags, each evaluated for 10,000 distinct users (contexts built before timing):
  static   — a flag with no targeting
  rule     — on when the user's email ends with "@example.com" (half of the users)
  rollout  — a 50 % fractional rollout bucketed by the user id

Engines: rollwise's native API (`FlagSet.resolve`), rollwise through the OpenFeature SDK client,
openfeature-flagd-core (flagd's Python evaluator) directly, GrowthBook and UnleashClient (offline
bootstrap). Each cell is the best of `--rounds` timed passes of at least `--seconds`; ratios are against
the fastest peer (non-rollwise engine) in the same column. The rollout column also reports the share of
users each engine turned on, as a check that all of them did the same work.

    python bench/flags.py --output bench/results/flags.md
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

USERS = 10_000
SCENARIOS = ("static", "rule", "rollout")

FLAGD_DOC: dict[str, Any] = {
    "flags": {
        "static": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
        "rule": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]},
        },
        "rollout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", 50], ["off", 50]]},
        },
    }
}


def users() -> list[tuple[str, str]]:
    return [(f"user-{i}", f"u{i}@example.com" if i % 2 else f"u{i}@other.org") for i in range(USERS)]


# --- engines: each returns {scenario: evaluate-all-users function returning how many were on} ---------

Pass = Callable[[], int]


def rollwise_native() -> dict[str, Pass]:
    from rollwise.flags import FlagSet

    flag_set = FlagSet.from_dict(FLAGD_DOC)
    contexts = [{"targetingKey": uid, "email": email} for uid, email in users()]

    def make(key: str) -> Pass:
        resolve = flag_set.resolve

        def run() -> int:
            on = 0
            for ctx in contexts:
                on += resolve(key, ctx, False).value
            return on

        return run

    return {s: make(s) for s in SCENARIOS}


def rollwise_openfeature() -> dict[str, Pass]:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    from rollwise.flags import RollwiseProvider

    tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115 - lives for the run
    import json

    json.dump(FLAGD_DOC, tmp)
    tmp.close()
    domain = f"bench-{uuid.uuid4().hex}"
    api.set_provider_and_wait(RollwiseProvider(tmp.name, watch=False), domain)
    client = api.get_client(domain)
    contexts = [EvaluationContext(uid, {"email": email}) for uid, email in users()]

    def make(key: str) -> Pass:
        get = client.get_boolean_value

        def run() -> int:
            on = 0
            for ctx in contexts:
                on += get(key, False, ctx)
            return on

        return run

    return {s: make(s) for s in SCENARIOS}


def flagd_core() -> dict[str, Pass]:
    from openfeature.contrib.tools.flagd.core import FlagdCore
    from openfeature.evaluation_context import EvaluationContext

    core = FlagdCore()
    core.set_flags(FLAGD_DOC)
    contexts = [EvaluationContext(uid, {"email": email}) for uid, email in users()]

    def make(key: str) -> Pass:
        resolve = core.resolve_boolean_value

        def run() -> int:
            on = 0
            for ctx in contexts:
                on += resolve(key, False, ctx).value
            return on

        return run

    return {s: make(s) for s in SCENARIOS}


def growthbook() -> dict[str, Pass]:
    from growthbook import GrowthBook

    features = {
        "static": {"defaultValue": True},
        "rule": {
            "defaultValue": False,
            "rules": [{"condition": {"email": {"$regex": "@example\\.com$"}}, "force": True}],
        },
        "rollout": {"defaultValue": False, "rules": [{"force": True, "coverage": 0.5, "hashAttribute": "id"}]},
    }
    gb = GrowthBook(features=features)
    attributes = [{"id": uid, "email": email} for uid, email in users()]

    def make(key: str) -> Pass:
        def run() -> int:
            on = 0
            for attrs in attributes:
                gb.set_attributes(attrs)
                on += gb.is_on(key)
            return on

        return run

    return {s: make(s) for s in SCENARIOS}


def unleash() -> dict[str, Pass]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    toggles = {
        "version": 1,
        "features": [
            {"name": "static", "enabled": True, "strategies": [{"name": "default"}]},
            {
                "name": "rule",
                "enabled": True,
                "strategies": [
                    {
                        "name": "default",
                        "constraints": [
                            {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@example.com"]}
                        ],
                    }
                ],
            },
            {
                "name": "rollout",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "rollout"},
                    }
                ],
            },
        ],
    }
    cache = FileCache("rollwise-bench", directory=tempfile.mkdtemp(prefix="unleash-bench-"))
    cache.bootstrap_from_dict(toggles)
    client = UnleashClient(
        url="http://127.0.0.1:9",  # never contacted: bootstrapped, no fetch, no metrics, no registration
        app_name="rollwise-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    contexts = [{"userId": uid, "properties": {"email": email}} for uid, email in users()]

    def make(key: str) -> Pass:
        def run() -> int:
            on = 0
            for ctx in contexts:
                on += client.is_enabled(key, ctx)
            return on

        return run

    return {s: make(s) for s in SCENARIOS}


ENGINES: dict[str, tuple[Callable[[], dict[str, Pass]], bool]] = {
    "rollwise native (`FlagSet.resolve`)": (rollwise_native, False),
    "rollwise via OpenFeature client": (rollwise_openfeature, False),
    "flagd core 2.0 (direct)": (flagd_core, True),
    "GrowthBook 4.0": (growthbook, True),
    "UnleashClient 6.9 (offline bootstrap)": (unleash, True),
}


def measure(run: Pass, seconds: float, rounds: int) -> tuple[float, int]:
    """Best evaluations/s over `rounds` timed windows of at least `seconds` each."""
    on = run()  # warm-up
    best = 0.0
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        while True:
            run()
            n += USERS
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, n / elapsed)
    return best, on


def fmt_rate(rate: float) -> str:
    return f"{rate / 1e6:.2f}M/s" if rate >= 1e6 else f"{rate / 1e3:.0f}k/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per cell (best is kept)")
    parser.add_argument("--output", help="also write the markdown report here")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # peers log on every evaluation in some paths

    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, tuple[float, int]]] = {}
    for name, (factory, _) in ENGINES.items():
        passes = factory()
        results[name] = {s: measure(passes[s], args.seconds, args.rounds) for s in SCENARIOS}
        print(f"measured {name}", file=sys.stderr)

    fastest_peer = {s: max(results[n][s][0] for n, (_, is_peer) in ENGINES.items() if is_peer) for s in SCENARIOS}
    lines = [
        "# Feature-flag evaluation speed",
        "",
        f"Command: `python bench/flags.py --seconds {args.seconds:g} --rounds {args.rounds}"
        + (f" --output {args.output}`" if args.output else "`"),
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, one core (single thread). "
        f"{USERS:,} distinct users per pass; best of {args.rounds} rounds of ≥ {args.seconds:g} s per cell. "
        "Ratio = evaluations/s ÷ the fastest peer's in the same column. "
        f"Load average (1 min) at start {load_before:.1f}, at end {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores: other work shares the machine, so absolute numbers move between runs; "
        "the ratios, taken in the same run, are the comparison.",
        "",
        "| engine | static flag | targeting rule | 50 % rollout | rollout share on |",
        "|---|---|---|---|---|",
    ]
    for name in ENGINES:
        cells = []
        for s in SCENARIOS:
            rate, _ = results[name][s]
            cells.append(f"{fmt_rate(rate)} ({rate / fastest_peer[s]:.1f}×)")
        share = results[name]["rollout"][1] / USERS
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {share:.1%} |")
    lines += [
        "",
        "Peers: openfeature-flagd-core evaluates flagd JSON with the same semantics as rollwise; GrowthBook "
        "uses a `coverage: 0.5` force rule and a `$regex` condition; Unleash uses `flexibleRollout` 50 % "
        "and a `STR_ENDS_WITH` constraint. rollwise's OpenFeature row includes the SDK's own call path "
        "(hooks, context merging), which dominates it.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
