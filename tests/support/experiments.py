"""Experiment data for the CLI and API tests: a spec, exposures, and events with a guardrail regression."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SPEC = {
    "name": "checkout-v2", "hypothesis": "A one-page checkout raises purchases", "owner": "growth",
    "flag": "new-checkout", "variants": ["off", "on"],
    "primary": {"name": "purchase", "kind": "conversion"},
    "secondary": [{"name": "revenue_per_session", "event": "revenue", "kind": "ratio", "denominator": "session"}],
    "guardrails": [{"name": "errors", "event": "error", "kind": "conversion", "higherIsBetter": False,
                    "maxRegression": 0.1}],
}


def _stamped(item: dict[str, Any], at: float | None) -> dict[str, Any]:
    """``at`` None: leave it out, so whoever records the item stamps it with the time it arrives."""
    return item if at is None else {**item, "at": at}


def exposures(subjects: int, at: float | None = None) -> list[dict[str, Any]]:
    return [_stamped({"subject": f"u{i}", "variant": "on" if i % 2 else "off"}, at) for i in range(subjects)]


def events(subjects: int, at: float | None = None, on_error_rate: float = 0.30) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out: list[dict[str, Any]] = []
    for i in range(subjects):
        on = i % 2 == 1
        if rng.random() < (0.12 if on else 0.10):
            out.append(_stamped({"subject": f"u{i}", "event": "purchase"}, at))
        out.append(_stamped({"subject": f"u{i}", "event": "session", "value": rng.randint(1, 4)}, at))
        out.append(_stamped({"subject": f"u{i}", "event": "revenue", "value": round(rng.random() * 20, 2)}, at))
        if rng.random() < (on_error_rate if on else 0.05):
            out.append(_stamped({"subject": f"u{i}", "event": "error"}, at))
    return out


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path
