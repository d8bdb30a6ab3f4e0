"""The OpenFeature provider feeds experiments in a real ``rollwise serve``: its hook records an exposure per
subject of each flag a running experiment is on, ``client.track`` sends metric events, both in batches, and
the server's readout counts exactly what the application saw."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.track import TrackingEventDetails

from rollwise.flags.provider import RollwiseProvider
from rollwise.flags.tracking import ExperimentTracker
from support.api import make_tokens
from support.experiments import SPEC
from support.serve_process import rollwise_serve

FLAGS = {"flags": {
    "new-checkout": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                     "targeting": {"fractional": [["on", 50], ["off", 50]]}},
    "banner": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
}}


def test_hook_exposures_and_tracked_events_reach_the_readout(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'rollwise.db'}"
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    tokens = make_tokens(store_url)
    with rollwise_serve(store_url, tmp_path, env={"ROLLWISE_AUDIT_KEY": "k" * 32}) as server:
        deployer = server.client(tokens["deployer"])
        assert deployer.post("/api/v1/experiments", json=SPEC).status_code == 201
        # background=False: the test decides when batches go (flush), so nothing races its assertions
        tracker = ExperimentTracker(server.url, tokens["deployer"], batch_size=70, background=False)
        provider = RollwiseProvider(flags, watch=False, tracker=tracker)
        domain = f"tracking-{uuid.uuid4().hex}"
        api.set_provider_and_wait(provider, domain)
        client = api.get_client(domain)
        try:
            seen: dict[str, str] = {}
            bought: dict[str, int] = {"on": 0, "off": 0}
            for i in range(300):
                context = EvaluationContext(targeting_key=f"user-{i}")
                for _ in range(2):  # evaluated twice: still one exposure
                    variant = client.get_boolean_details("new-checkout", False, context).variant
                client.get_boolean_details("banner", False, context)  # no experiment on it: no exposure
                assert variant is not None
                seen[f"user-{i}"] = variant
                if i % 3 == 0:
                    client.track("purchase", context, TrackingEventDetails(value=1.0))
                    bought[variant] += 1
                client.track("session", context, TrackingEventDetails(value=2.0))
                client.track("revenue", context, TrackingEventDetails(value=float(i % 7)))
            client.track("purchase", EvaluationContext())  # no targeting key: cannot be joined, dropped here
            client.track("bad event name!", EvaluationContext(targeting_key="user-1"))  # would poison its batch
            tracker.flush()
        finally:
            provider.shutdown()  # closes the tracker (sends what is left)

        assert tracker.stats.dropped == 2 and tracker.stats.last_error is None
        assert tracker.stats.exposures_sent == 300 and tracker.stats.events_sent == 700
        assert tracker.stats.requests >= 300 // 70 + 700 // 70  # in batches of at most 70
        readout = deployer.get("/api/v1/experiments/checkout-v2").json()["readout"]
        counts = {v: sum(1 for s in seen.values() if s == v) for v in ("off", "on")}
        assert readout["counts"] == counts and min(counts.values()) > 100  # the split is the provider's
        purchase = readout["metrics"][0]
        assert purchase["control_value"] == bought["off"] / counts["off"]
        assert purchase["comparisons"][0]["value"] == bought["on"] / counts["on"]
        rps = readout["metrics"][1]
        revenue_off = sum(i % 7 for i in range(300) if seen[f"user-{i}"] == "off")
        assert abs(rps["control_value"] - revenue_off / (2.0 * counts["off"])) < 1e-9


def test_undelivered_events_are_kept_for_the_next_flush(tmp_path: Path) -> None:
    """No server listening: the batch stays buffered (in order) and the error is reported, not raised."""
    tracker = ExperimentTracker("http://127.0.0.1:9", "token", background=False)
    assert tracker.event("u1", "purchase") and tracker.event("u2", "revenue", 3.5)
    tracker.flush()
    assert tracker.stats.events_sent == 0 and tracker.stats.dropped == 0
    assert tracker.stats.last_error is not None and tracker.stats.last_error.startswith("POST /api/v1/metric-events")
    assert tracker.pending() == (0, 2)
    tracker.flush()  # still nothing listening: still kept, not duplicated
    assert tracker.pending() == (0, 2)
