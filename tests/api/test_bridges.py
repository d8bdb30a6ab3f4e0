"""Argo Rollouts' ``web`` metric provider and Flagger's webhooks against a real ``rollwise serve`` (issue 17,
part 5), request for request as those controllers send them, with a Prometheus query API serving two
versions (tests/support/fake_prometheus.py).

The requests follow the controllers' documentation:
- Argo Rollouts, https://argoproj.github.io/argo-rollouts/analysis/web/ : GET of the template's ``url``
  (arguments rendered into the query string) with its ``headers``; or ``method: POST``/``PUT`` with
  ``jsonBody`` and ``Content-Type: application/json``. The JSON answer is ``result`` in
  ``successCondition``; a non-2xx answer is an error measurement.
- Flagger, https://docs.flagger.app/usage/webhooks : POST of
  ``{"name", "namespace", "phase", "checksum", "type", "metadata": {string: string}}`` to each hook's URL;
  only the status counts (2xx passes; anything else fails the check).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.common import REPO
from support.fake_prometheus import QUERIES, FakePrometheus, Profile, fake_prometheus
from support.serve_process import ServeProcess, rollwise_serve

pytestmark = pytest.mark.timeout(300)

FAST = {"judge": "threshold", "minSamples": "400", "errorRate": "1%", "latencyP99": "500ms"}


@pytest.fixture(scope="module")
def prometheus() -> Iterator[FakePrometheus]:
    with fake_prometheus({"6d4f8c7b9": Profile(rps=400, error_rate=0.001),
                          "7f9b5d6c4": Profile(rps=400, error_rate=0.001),
                          "5c8e9a7f1": Profile(rps=400, error_rate=0.25, latency_ms=900)}) as fake:
        yield fake


STABLE, GOOD, BAD = "6d4f8c7b9", "7f9b5d6c4", "5c8e9a7f1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, prometheus: FakePrometheus) -> Iterator[ServeProcess]:
    work = tmp_path_factory.mktemp("bridges")
    with rollwise_serve(f"sqlite:///{work / 'serve.db'}", work, "--allow-url", prometheus.url + "/") as served:
        yield served


def until(call: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool],
          tries: int = 20) -> list[httpx.Response]:
    """Call as the controller does, once per interval (1s here), until ``done``; every answer in order."""
    answers = []
    for _ in range(tries):
        time.sleep(1.05)
        answers.append(call())
        if done(answers[-1]):
            return answers
    raise AssertionError([a.text for a in answers])


# ------------------------------------------------------------------------------------------ Argo


def test_argo_get_as_the_web_provider_sends_it_promotes_a_good_version(
        server: ServeProcess, prometheus: FakePrometheus) -> None:
    # url: "http://rollwise:8080/api/v1/bridges/argo?baseline={{args.stable-hash}}&canary={{args.canary-hash}}
    #       &run={{args.canary-hash}}&prometheus=...&judge=threshold&..."  headers: [{key: Authorization, ...}]
    params = {"baseline": STABLE, "canary": GOOD, "run": f"checkout-{GOOD}", "prometheus": prometheus.url,
              "lookback": "5s", **FAST}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = until(lambda: client.get("/api/v1/bridges/argo", params=params,
                                           headers={"Accept": "application/json"}),
                        lambda r: r.json()["verdict"] != "continue")
    assert all(a.status_code == 200 for a in answers)
    result = answers[-1].json()
    assert result["verdict"] == "promote", result  # successCondition: result.verdict == "promote"
    assert result["canary"]["version"] == GOOD and result["canary"]["requests"] >= 400
    assert result["baseline"]["errorRate"] is not None and result["windows"] == len(answers)
    assert result["evidence"]["metrics"] and result["reason"]
    assert any(f'envoy_cluster_name="{GOOD}"' in q for q in prometheus.queries)  # Envoy's names by default


def test_argo_post_with_a_json_body_rolls_back_a_bad_version_and_stays_rolled_back(
        server: ServeProcess, prometheus: FakePrometheus) -> None:
    # method: POST, headers: [{key: Content-Type, value: application/json}], jsonBody: {...}
    body = {"baseline": STABLE, "canary": BAD, "run": f"checkout-{BAD}", "prometheus": prometheus.url,
            "lookback": "5s", **FAST, **QUERIES}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = until(lambda: client.post("/api/v1/bridges/argo", json=body),
                        lambda r: r.json()["verdict"] != "continue")
        result = answers[-1].json()
        assert result["verdict"] == "rollback", result  # failureCondition: result.verdict == "rollback"
        assert result["culprit"] and result["canary"]["errorRate"] > 0.1
        assert any(f'app_requests_total{{version="{BAD}",code="5xx"}}' in q for q in prometheus.queries)
        again = client.put("/api/v1/bridges/argo", json=body).json()
    assert again["verdict"] == "rollback" and again["windows"] == result["windows"]  # decided: it sticks


def test_argo_bad_input_is_one_line_naming_the_parameter(server: ServeProcess, prometheus: FakePrometheus) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        missing = client.get("/api/v1/bridges/argo", params={"baseline": STABLE})
        assert missing.status_code == 400 and missing.json()["detail"].startswith("canary: required")
        bad_slo = client.get("/api/v1/bridges/argo", params={"baseline": STABLE, "canary": GOOD, "errorRate": "lots"})
        assert bad_slo.status_code == 400 and bad_slo.json()["detail"].startswith("errorRate:"), bad_slo.text
        injected = client.post("/api/v1/bridges/argo", json={"baseline": STABLE, "canary": 'x"} or up{'})
        assert injected.status_code == 400 and injected.json()["detail"].startswith("canary:")
        elsewhere = client.get("/api/v1/bridges/argo", params={"baseline": STABLE, "canary": GOOD,
                                                               "prometheus": "http://10.1.2.3:9090"})
        assert elsewhere.status_code == 422 and "--allow-url" in elsewhere.json()["detail"]
        down = client.get("/api/v1/bridges/argo", params={"baseline": STABLE, "canary": GOOD, "run": "down",
                                                          "prometheus": prometheus.url + "/nowhere"})
        assert down.status_code == 503, down.text  # unknown, not bad: Argo counts an error measurement


# ------------------------------------------------------------------------------------------ Flagger


def flagger(client: httpx.Client, hook: str, canary: str, checksum: str, prometheus: FakePrometheus,
            **extra: str) -> httpx.Response:
    payload: dict[str, Any] = {
        "name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": checksum, "type": hook,
        "metadata": {"baseline": STABLE, "canary": canary, "prometheus": prometheus.url, "lookback": "5s",
                     **FAST, **extra},
    }
    return client.post(f"/api/v1/bridges/flagger/{hook}", json=payload)


def test_flagger_webhooks_accumulate_and_gate_the_promotion(server: ServeProcess, prometheus: FakePrometheus) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert flagger(client, "confirm-rollout", GOOD, "85d557f47b", prometheus).status_code == 200
        assert flagger(client, "pre-rollout", GOOD, "85d557f47b", prometheus).status_code == 200
        early = flagger(client, "confirm-promotion", GOOD, "85d557f47b", prometheus)
        assert early.status_code == 409 and early.json()["detail"].startswith("not yet")
        answers = until(lambda: flagger(client, "rollout", GOOD, "85d557f47b", prometheus),
                        lambda r: r.json()["verdict"] == "promote")
        assert all(a.status_code == 200 for a in answers)
        assert [a.json()["windows"] for a in answers] == list(range(1, len(answers) + 1))  # kept between calls
        assert flagger(client, "confirm-promotion", GOOD, "85d557f47b", prometheus).status_code == 200


def test_flagger_rollout_hook_fails_a_bad_canary_and_refuses_its_checksum_again(
        server: ServeProcess, prometheus: FakePrometheus) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert flagger(client, "pre-rollout", BAD, "c0ffee1234", prometheus).status_code == 200
        answers = until(lambda: flagger(client, "rollout", BAD, "c0ffee1234", prometheus),
                        lambda r: r.status_code != 200)
        failed = answers[-1]
        assert failed.status_code == 409 and failed.json()["detail"].startswith("rollback:"), failed.text
        assert failed.json()["verdict"] == "rollback"
        again = flagger(client, "confirm-rollout", BAD, "c0ffee1234", prometheus)
        assert again.status_code == 409 and "was rolled back" in again.json()["detail"]
        fresh = flagger(client, "confirm-rollout", BAD, "0ther5um", prometheus)
        assert fresh.status_code == 200  # a new revision is a new analysis
        unknown = flagger(client, "post-rollout", BAD, "c0ffee1234", prometheus)
        assert unknown.status_code == 400 and unknown.json()["detail"].startswith("hook:")


# ------------------------------------------------------------------------------------------ store and tokens


def test_sessions_live_in_the_store_across_a_restart_and_tokens_are_required(
        tmp_path: Path, prometheus: FakePrometheus) -> None:
    store = f"sqlite:///{tmp_path / 'bridges.db'}"
    params = {"baseline": STABLE, "canary": GOOD, "run": "restart", "prometheus": prometheus.url,
              "lookback": "5s", "judge": "threshold", "minSamples": "100000"}
    with rollwise_serve(store, tmp_path / "a", "--allow-url", prometheus.url + "/") as first:
        assert httpx.get(f"{first.url}/api/v1/bridges/argo", params=params).json()["windows"] == 1
    made = {role: subprocess.run([sys.executable, "-m", "rollwise", "tokens", "create", "--role", role, "--name",
                                  f"flagger-{role}", "--store", store], capture_output=True, text=True, cwd=REPO)
            for role in ("viewer", "deployer")}
    tokens = {role: m.stdout.strip().splitlines()[-1] for role, m in made.items()}
    with rollwise_serve(store, tmp_path / "b", "--allow-url", prometheus.url + "/") as second, \
            httpx.Client(base_url=second.url, timeout=30) as client:
        time.sleep(1.05)
        assert client.get("/api/v1/bridges/argo", params=params).status_code == 401
        resumed = client.get("/api/v1/bridges/argo", params=params,
                             headers={"Authorization": f"Bearer {tokens['deployer']}"})
        assert resumed.status_code == 200 and resumed.json()["windows"] == 2  # the first server's window counts
        assert flagger(client, "confirm-rollout", GOOD, "abc", prometheus).status_code == 401
        weak = flagger(client, "confirm-rollout", GOOD, "abc", prometheus, token=tokens["viewer"])
        assert weak.status_code == 403
        assert flagger(client, "confirm-rollout", GOOD, "abc", prometheus, token=tokens["deployer"]).status_code == 200
