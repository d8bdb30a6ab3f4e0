"""Rollout specs the engine, CLI and judge tests share: a service with two versions and no data plane."""

from __future__ import annotations

SHOP = """
name: shop
service: shop
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: none}
strategy:
"""
"""The head of a spec for rollout ``shop`` (v1 -> v2, router ``none``); a test appends its strategy."""

STEPPED_WEIGHTS = [5, 10, 25, 50, 100]
"""The weights of :func:`stepped_file_spec`: five steps with a pause between them."""

_STEPPED = """
name: {name}
service: svc-{name}
versions:
  stable: {{name: v1, address: 127.0.0.1:9001}}
  canary: {{name: v2, address: 127.0.0.1:9002}}
traffic: {{router: file, path: "{route_path}"}}
strategy:
  canary:
    steps:
{steps}
"""


def stepped_file_spec(name: str, route_path: object, pause_s: float) -> str:
    """A canary through :data:`STEPPED_WEIGHTS` with ``pause_s`` between steps, routed to a file.

    The crash and takeover tests count its steps and weights in the events: every step exactly once.
    """
    lines = []
    for weight in STEPPED_WEIGHTS:
        lines.append(f"      - setWeight: {weight}")
        if weight < 100:
            lines.append(f"      - pause: {{duration: {pause_s}s}}")
    return _STEPPED.format(name=name, route_path=route_path, steps="\n".join(lines))


_SIMULATED_WAVES = """
name: shop
service: shop
versions:
  stable: {{name: v1}}
  canary: {{name: v2}}
traffic: {{router: simulated}}
metrics: {{source: simulated}}
strategy:
  canary:
    analysis:
      interval: 10s
      minStageTime: 20s
      metrics:
        - {{name: error-rate, type: errorRate, slo: "< 1%", maxIncrease: 0%, critical: true}}
    steps:
      - setWeight: 20
      - pause: {{duration: 30s}}
      - setWeight: 50
    waves:
{waves}
"""


def simulated_waves_spec(*waves: tuple[str, str]) -> str:
    """Rollout ``shop`` on the simulated fleet, its canary in region waves: one ``(name, "[a, b]")`` per
    wave, each baking a minute; the error rate is critical, so one region's fault rolls every wave back."""
    return _SIMULATED_WAVES.format(waves="\n".join(
        f"      - {{name: {name}, regions: {regions}, bake: 1m}}" for name, regions in waves))
