"""Kill switch end to end: `rollwise flags kill` (run as its own process) rewrites the flag file; the
running flag service, its SSE subscribers, a PyPI OFREP client and an in-process provider all switch to
the off variant. The delay from the file write to each observer is measured and printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent

from rollwise.flags import RollwiseProvider
from rollwise.flags.service import create_flags_app
from support.flags_server import serve

KILL_BUDGET_SECONDS = 1.0

FLAGS = {
    "flags": {
        "new-checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "targeting": {"fractional": [["on", 100], ["off", 0]]},
        },
        "banner": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a"},
    }
}


def _watch_until(predicate: object, seen: dict[str, float], name: str, stop: threading.Event) -> None:
    """Poll `predicate` every 20 ms (at most 10 s) and record when it first holds."""
    deadline = time.time() + 10
    while not stop.is_set() and time.time() < deadline:
        if predicate():  # type: ignore[operator]
            seen[name] = time.time()
            return
        time.sleep(0.02)


@pytest.mark.timeout(60)
def test_kill_reaches_ofrep_client_sse_subscriber_and_provider_within_budget(tmp_path: Path) -> None:
    flags_file = tmp_path / "flags.json"
    flags_file.write_text(json.dumps(FLAGS))
    app = create_flags_app(flags_file, poll_interval=0.1)
    seen: dict[str, float] = {}
    stop = threading.Event()
    threads: list[threading.Thread] = []
    provider = RollwiseProvider(flags_file, poll_interval=0.1)
    with serve(app) as base_url:
        try:
            ofrep_domain, local_domain = f"kill-ofrep-{uuid.uuid4().hex}", f"kill-local-{uuid.uuid4().hex}"
            api.set_provider_and_wait(OFREPProvider(base_url, timeout=2), ofrep_domain)
            api.set_provider_and_wait(provider, local_domain)
            ofrep_client, local_client = api.get_client(ofrep_domain), api.get_client(local_domain)
            ctx = EvaluationContext("user-42")
            assert ofrep_client.get_boolean_value("new-checkout", False, ctx) is True
            assert local_client.get_boolean_value("new-checkout", False, ctx) is True

            changed_events: list[EventDetails] = []

            def on_changed(details: EventDetails) -> None:
                changed_events.append(details)
                seen.setdefault("provider event", time.time())

            local_client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_changed)

            sse_ready = threading.Event()
            sse_events: list[dict[str, object]] = []

            def subscribe() -> None:
                with (
                    httpx.Client(timeout=httpx.Timeout(10.0, read=10.0)) as http,
                    http.stream("GET", f"{base_url}/ofrep/v1/changes") as response,
                ):
                    event = None
                    for line in response.iter_lines():
                        if line.startswith("event: "):
                            event = line.removeprefix("event: ")
                        elif line.startswith("data: ") and event == "ready":
                            sse_ready.set()
                        elif line.startswith("data: ") and event == "configuration_changed":
                            seen["SSE subscriber"] = time.time()
                            sse_events.append(json.loads(line.removeprefix("data: ")))
                            return
                        if stop.is_set():
                            return

            observers = {
                "SSE subscriber": subscribe,
                "OFREP client (PyPI)": lambda: _watch_until(
                    lambda: ofrep_client.get_boolean_value("new-checkout", True, ctx) is False,
                    seen,
                    "OFREP client (PyPI)",
                    stop,
                ),
                "in-process provider": lambda: _watch_until(
                    lambda: local_client.get_boolean_value("new-checkout", True, ctx) is False,
                    seen,
                    "in-process provider",
                    stop,
                ),
            }
            for name, target in observers.items():
                t = threading.Thread(target=target, name=name, daemon=True)
                threads.append(t)
                t.start()
            assert sse_ready.wait(5), "SSE stream did not open"

            kill = subprocess.run(
                [
                    *(sys.executable, "-m", "rollwise.flags.cli", "kill", "new-checkout"),
                    *("--file", str(flags_file), "--reason", "checkout errors spiking"),
                    *("--actor", "oncall@example.com"),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert kill.returncode == 0, kill.stderr
            written_at = os.stat(flags_file).st_mtime_ns / 1e9
            for t in threads:
                t.join(10)
        finally:
            stop.set()
            provider.shutdown()

    delays = {name: seen[name] - written_at for name in seen}
    print("\nkill switch propagation (file write -> observer):")
    for name, delay in sorted(delays.items(), key=lambda kv: kv[1]):
        print(f"  {name:22s} {delay * 1000:7.1f} ms")
    for name in ("SSE subscriber", "OFREP client (PyPI)", "in-process provider", "provider event"):
        assert name in delays, f"{name} never saw the kill"
        assert delays[name] < KILL_BUDGET_SECONDS, f"{name} saw the kill after {delays[name]:.3f}s"
    assert sse_events[0]["flagsChanged"] == ["new-checkout"]
    assert changed_events and changed_events[0].flags_changed == ["new-checkout"]
    # The untouched flag still serves, and the change is audited.
    history = [json.loads(line) for line in (tmp_path / "flags.json.history.jsonl").read_text().splitlines()]
    assert [(h["action"], h["flag"], h["actor"], h["reason"]) for h in history] == [
        ("kill", "new-checkout", "oncall@example.com", "checkout errors spiking")
    ]
