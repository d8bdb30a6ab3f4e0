"""Backend failures vs no data, as users see them: a separate ``rollwise controller`` process drives
three rollouts whose Prometheus is (a) a closed loopback port, (b) a real Prometheus given a bad PromQL
query, (c) a real Prometheus with no series for the rollout; ``rollout status``, ``history`` and
``explain`` must say which is which (issue 11, item 7)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollwise.adapters.metrics.prometheus import LocalPrometheus
from support.common import REPO, require_or_skip

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(900)]

SPEC = """
name: NAME
service: shop
versions:
  stable: {name: v1, address: 127.0.0.1:9001}
  canary: {name: v2, address: 127.0.0.1:9002}
traffic: {router: none}
metrics:
  source: prometheus
  prometheusUrl: URL
QUERIES
strategy:
  canary:
    analysis:
      judge: threshold
      interval: 2s
      minStageTime: 2s
      onNoData: abort
      noDataLimit: 12s
      baselineHistory: 0s
      metrics:
        - {name: error-rate, type: errorRate, slo: "< 1%"}
    steps:
      - setWeight: 10
      - pause: {duration: 1h}
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket goes: connections are refused


def rollwise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def status(store: str, name: str) -> dict[str, Any]:
    result = rollwise("rollout", "status", name, "--store", store, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def history(store: str, name: str) -> list[dict[str, Any]]:
    result = rollwise("history", name, "--store", store, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def prometheus() -> Iterator[LocalPrometheus]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    require_or_skip(Path(binary).exists(), "prometheus binary (apt-get install -y prometheus)")
    server = LocalPrometheus(targets=[f"127.0.0.1:{closed_port()}"], binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_status_history_and_explain_tell_a_failing_backend_from_no_data(
    tmp_path: Path, prometheus: LocalPrometheus
) -> None:
    store = f"sqlite:///{tmp_path / 'metrics.db'}"
    dead = f"http://127.0.0.1:{closed_port()}"
    specs = {
        "refused": SPEC.replace("URL", dead).replace("QUERIES", ""),
        "badquery": SPEC.replace("URL", prometheus.url)
        .replace("QUERIES", "  prometheusQueries: {requests: 'sum(rate(envoy_cluster_upstream_rq_xx['}"),
        "silent": SPEC.replace("URL", prometheus.url).replace("QUERIES", ""),
    }
    for name, text in specs.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.replace("NAME", name))
        started = rollwise("rollout", "start", str(path), "--no-wait", "--store", store)
        assert started.returncode == 0, started.stderr
    controller = subprocess.Popen([sys.executable, "-m", "rollwise", "controller", "--store", store, "--poll",
                                   "0.2", "--max-seconds", "800"], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not all(status(store, name)["phase"] == "Aborted" for name in specs):
            assert time.monotonic() < deadline, [status(store, name) for name in specs]
            time.sleep(2)
    finally:
        controller.terminate()
        controller.wait(timeout=30)

    refused = history(store, "refused")
    errors = [e for e in refused if e["type"] == "metrics-error"]
    assert len(errors) == 1  # once per distinct error, not once per tick
    assert errors[0]["data"]["error"] == f"Prometheus at {dead} unreachable: [Errno 111] Connection refused"
    assert refused[-1]["message"].startswith("Aborted: no metrics for ")
    assert f"the backend failed: Prometheus at {dead} unreachable" in refused[-1]["message"]
    assert status(store, "refused")["metrics_error"] == errors[0]["data"]["error"]
    explained = rollwise("explain", "refused", "--store", store)
    assert explained.returncode == 0 and "Metrics backend error: Prometheus at" in explained.stdout
    assert "not \"no data\"" in explained.stdout

    bad = [e for e in history(store, "badquery") if e["type"] == "metrics-error"]
    assert len(bad) == 1 and bad[0]["data"]["error"].startswith(f"Prometheus at {prometheus.url} rejected query")
    assert "bad_data" in bad[0]["data"]["error"] and "\n" not in bad[0]["data"]["error"]
    assert "bad_data" in (status(store, "badquery")["metrics_error"] or "")
    assert "rejected query" in rollwise("explain", "badquery", "--store", store).stdout

    silent = history(store, "silent")
    assert not [e for e in silent if e["type"].startswith("metrics-")]
    assert status(store, "silent")["metrics_error"] is None
    assert silent[-1]["message"].startswith("Aborted: no metrics for ")
    assert silent[-1]["message"].endswith("s (onNoData: abort)") and "backend" not in silent[-1]["message"]
    assert "Metrics backend error" not in rollwise("explain", "silent", "--store", store).stdout
