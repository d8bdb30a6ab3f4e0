"""An Envoy fleet on ADS: real Envoys in two regions, real upstreams, the ADS server in a real
``rollwise controller`` process that is SIGKILLed and restarted, and a NACK surfacing as the rollout's error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.core.clock import SystemClock
from rollwise.core.model import RouteState, WindowQuery
from rollwise.fleet.local_envoys import LocalEnvoy, start_envoy
from rollwise.fleet.view import envoy_rows
from rollwise.local_processes import free_port
from rollwise.spec.loader import load_spec_text
from rollwise.wiring import Runtime, open_fleet, open_store, start_ads
from support.processes import ServiceFactory

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(150)]

REGIONS = {"e-a1": "a", "e-a2": "a", "e-b1": "b"}
SPEC = """
name: shop
service: shop
versions:
  stable: {{name: v1, address: "{v1}"}}
  canary: {{name: v2, address: "{v2}"}}
traffic: {{router: envoy-ads}}
metrics: {{source: envoy}}
strategy:
  canary:
    steps:
{steps}
"""


def spec_text(v1: str, v2: str, *steps: str) -> str:
    return SPEC.format(v1=v1, v2=v2, steps="\n".join(f"      - {s}" for s in steps))


def split(envoy: LocalEnvoy, n: int = 100) -> Counter[str]:
    with httpx.Client(base_url=envoy.url, timeout=5) as client:
        seen: Counter[str] = Counter()
        for i in range(n):
            response = client.get(f"/item/{i}")
            seen[response.headers.get("x-version", str(response.status_code))] += 1
        return seen


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def envoys(tmp_path: Path) -> Iterator[Callable[..., list[LocalEnvoy]]]:
    started: list[LocalEnvoy] = []

    def start(ads_port: int, delta: tuple[str, ...] = ()) -> list[LocalEnvoy]:
        """The three Envoys; those named in ``delta`` speak incremental xDS, the others state of the world."""
        fleet = [start_envoy(tmp_path / "envoys", node, f"127.0.0.1:{ads_port}", region=region, wait=False,
                             delta=node in delta) for node, region in REGIONS.items()]
        started.extend(fleet)
        for envoy in fleet:
            envoy.wait_live()
        return fleet

    try:
        yield start
    finally:
        for envoy in started:
            envoy.stop()


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.store_url = f"sqlite:///{tmp_path / 'r.db'}"
        self.env = {**os.environ, "ROLLWISE_STORE": self.store_url, "HOME": str(tmp_path)}
        self.cwd = tmp_path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "rollwise", *args], capture_output=True, text=True,
                              env=self.env, timeout=60, cwd=self.cwd)
        assert done.returncode == 0, done.stderr
        return done

    def controller(self, ads_port: int) -> subprocess.Popen[bytes]:
        log = open(self.cwd / "controller.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen([sys.executable, "-m", "rollwise", "controller", "--poll", "0.1",
                                    "--ads-listen", f"127.0.0.1:{ads_port}"], env=self.env, cwd=self.cwd,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_for("the ADS server to listen", lambda: process.poll() is None and listening(ads_port), 60)
        return process

    def fleet(self) -> list[dict[str, Any]]:
        """What `rollwise fleet list --output json` shows, read in this process (the CLI is checked at the end)."""
        store = open_store(self.store_url)
        try:
            fleet = open_fleet(store)
            assert fleet is not None
            return envoy_rows(fleet.nodes(), time.time())
        finally:
            store.close()  # type: ignore[attr-defined]

    def route(self) -> RouteState:
        store = open_store(self.store_url)
        try:
            return store.get("shop").route
        finally:
            store.close()  # type: ignore[attr-defined]

    def route_revision(self) -> int:
        return self.route().revision

    def wait_confirmed_by_all(self) -> int:
        def done() -> bool:
            revision = self.route_revision()
            rows = self.fleet()
            return len(rows) == 3 and all(r["live"] and r["confirmed"].get("shop", -1) >= revision for r in rows)

        wait_for("every Envoy to ACK the committed route", done)
        return self.route_revision()


class Traffic:
    """Requests round-robin through the Envoys on keep-alive connections, in a thread, counting failures."""

    def __init__(self, fleet: list[LocalEnvoy]) -> None:
        self.clients = [httpx.Client(base_url=e.url, timeout=5) for e in fleet]
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.clients[self.sent % len(self.clients)].get(f"/item/{self.sent}").status_code == 200
            except httpx.HTTPError:
                ok = False
            self.sent += 1
            self.failed += 0 if ok else 1
            time.sleep(0.01)

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join(10)
        for client in self.clients:
            client.close()
        return self.sent, self.failed


def xds_counters(envoy: LocalEnvoy) -> dict[str, str]:
    return envoy.stats(r"(rds\.rollwise\.(version_text|config_reload)|cluster_manager\.cds\.version_text|"
                       r"listener_manager\.(lds\.version_text|listener_modified|listener_removed)|"
                       r"cluster_manager\.cluster_(modified|removed))$")


@pytest.mark.parametrize("delta", [(), ("e-a1", "e-b1")], ids=["state-of-the-world", "delta-and-sotw"])
def test_a_fleet_follows_the_store_and_a_killed_control_plane_reverts_nothing(
        tmp_path: Path, start_service: ServiceFactory, envoys: Callable[..., list[LocalEnvoy]],
        delta: tuple[str, ...]) -> None:
    """Also with Envoys on incremental xDS beside state-of-the-world ones: the same versions (the whole set's
    content hash) everywhere, and reconnecting with ``initial_resource_versions`` re-applies nothing."""
    v1, v2 = start_service("v1"), start_service("v2")
    cli = Cli(tmp_path)
    (tmp_path / "shop.yaml").write_text(spec_text(
        v1.address, v2.address, "setWeight: 20", "pause: {duration: 1h}", "setWeight: 60",
        "pause: {duration: 1h}", "setWeight: 100"))
    ads_port = free_port()
    controller = cli.controller(ads_port)
    try:
        fleet = envoys(ads_port, delta)
        cli.run("rollout", "start", "shop.yaml", "--no-wait")
        wait_for("weight 20", lambda: cli.route().canary_weight == 20)
        cli.wait_confirmed_by_all()
        for envoy in fleet:
            assert 10 <= split(envoy)["v2"] <= 40  # 20 % of 100

        cli.run("rollout", "promote", "shop")  # the pause ends: weight 60, ACKed by all
        wait_for("weight 60", lambda: cli.route().canary_weight == 60)
        revision = cli.wait_confirmed_by_all()
        before = {e.node_id: xds_counters(e) for e in fleet}
        rds = {n: before[n]["http.ingress.rds.rollwise.version_text"] for n in before}
        # one weight everywhere; the routes differ by region only in the x-rollwise-region each Envoy adds
        assert rds["e-a1"] == rds["e-a2"] != rds["e-b1"]

        traffic = Traffic(fleet).start()  # keep-alive requests through every Envoy from the kill to the end
        controller.send_signal(signal.SIGKILL)
        controller.wait(10)
        wait_for("Envoys to notice", lambda: all(
            e.stats(r"control_plane\.connected_state$")["control_plane.connected_state"] == "0" for e in fleet))
        for envoy in fleet:  # the data plane keeps the last weights with no control plane
            seen = split(envoy)
            assert set(seen) == {"v1", "v2"} and 40 <= seen["v2"] <= 80

        controller = cli.controller(ads_port)
        wait_for("Envoys to reconnect", lambda: all(
            e.stats(r"control_plane\.connected_state$")["control_plane.connected_state"] == "1" for e in fleet))
        assert cli.wait_confirmed_by_all() == revision
        time.sleep(1.0)  # anything the restarted server would push has arrived by now
        after = {e.node_id: xds_counters(e) for e in fleet}
        assert after == before  # same versions, no route reload, no listener or cluster touched: nothing reverted
        rows = json.loads(cli.run("fleet", "list", "--output", "json").stdout)
        assert {(r["node_id"], r["region"], r["live"]) for r in rows} == {(n, g, True) for n, g in REGIONS.items()}
        assert {r["node_id"]: r["versions"]["rds"] for r in rows} == rds
        assert {r["node_id"]: r["protocol"] for r in rows} == {n: "delta" if n in delta else "sotw" for n in REGIONS}

        cli.run("rollout", "promote", "shop")  # the rollout resumes under the restarted control plane
        wait_for("weight 100", lambda: cli.route().canary_weight == 100)
        assert cli.wait_confirmed_by_all() > revision
        assert all(split(e, 20) == Counter({"v2": 20}) for e in fleet)
        assert traffic.stop() == (traffic.sent, 0)  # not one request failed across the kill, restart and step
        assert traffic.sent > 50
        listing = cli.run("fleet", "list").stdout
        for node, region in REGIONS.items():
            assert node in listing and f" {region} " in listing
        assert listing.count("connected") == 3
    finally:
        controller.send_signal(signal.SIGTERM)
        try:
            controller.wait(10)
        except subprocess.TimeoutExpired:
            controller.kill()


WAVES = """
    waves:
      - {name: first, regions: [a], bake: 1s}
      - {name: second, regions: [b], bake: 1s}
"""


def test_a_control_plane_killed_mid_wave_reverts_no_envoy_and_the_waves_resume_without_a_repeat(
        tmp_path: Path, start_service: ServiceFactory, envoys: Callable[[int], list[LocalEnvoy]]) -> None:
    v1, v2 = start_service("v1"), start_service("v2")
    cli = Cli(tmp_path)
    (tmp_path / "shop.yaml").write_text(spec_text(v1.address, v2.address, "setWeight: 50",
                                                  "pause: {duration: 1h}") + WAVES.lstrip("\n"))
    ads_port = free_port()
    controller = cli.controller(ads_port)
    try:
        fleet = envoys(ads_port)
        by_node = {e.node_id: e for e in fleet}
        cli.run("rollout", "start", "shop.yaml", "--no-wait")
        wait_for("wave first at 50 % in region a", lambda: cli.route().region_weights.get("a") == 50)
        revision = cli.wait_confirmed_by_all()
        assert split(by_node["e-b1"]) == Counter({"v1": 100})  # region b has not started: stable only
        before = {e.node_id: xds_counters(e) for e in fleet}

        traffic = Traffic(fleet).start()
        controller.send_signal(signal.SIGKILL)  # mid-wave: region a at 50 %, the step's pause running
        controller.wait(10)
        for node in ("e-a1", "e-a2"):  # no control plane: region a keeps its split, region b stays on v1
            assert 25 <= split(by_node[node])["v2"] <= 75
        assert split(by_node["e-b1"]) == Counter({"v1": 100})

        controller = cli.controller(ads_port)
        wait_for("Envoys to reconnect", lambda: all(
            e.stats(r"control_plane\.connected_state$")["control_plane.connected_state"] == "1" for e in fleet))
        assert cli.wait_confirmed_by_all() == revision
        time.sleep(1.0)
        assert {e.node_id: xds_counters(e) for e in fleet} == before  # nothing reverted, nothing reloaded

        cli.run("rollout", "promote", "shop")  # the wave resumes: its pause ends, it bakes, region b starts
        wait_for("wave second at 50 % in region b", lambda: cli.route().region_weights == {"a": 100, "b": 50}, 60)
        cli.wait_confirmed_by_all()
        assert split(by_node["e-a1"], 20) == Counter({"v2": 20})
        assert 25 <= split(by_node["e-b1"])["v2"] <= 75
        assert traffic.stop() == (traffic.sent, 0)  # not one request failed across the kill and the restart
        store = open_store(cli.store_url)
        try:
            waves = [(e.data["wave"], e.data["action"]) for e in store.events("shop") if e.type == "wave"]
        finally:
            store.close()  # type: ignore[attr-defined]
        for step in [("first", "start"), ("first", "promoted"), ("second", "start")]:
            assert waves.count(step) == 1, waves  # no step of a wave repeated across the restart
    finally:
        controller.send_signal(signal.SIGTERM)
        try:
            controller.wait(10)
        except subprocess.TimeoutExpired:
            controller.kill()


def test_a_nack_is_the_rollouts_error_with_envoys_message_and_regions_are_summed_apart(
        tmp_path: Path, start_service: ServiceFactory, envoys: Callable[..., list[LocalEnvoy]]) -> None:
    """One of the three Envoys speaks incremental xDS: its NACK holds the rollout the same way."""
    from rollwise.adapters.metrics.envoy import EnvoyFleetMetricSource

    v1, v2 = start_service("v1"), start_service("v2")
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    runtime = Runtime(workdir=tmp_path / "rw", store=store)
    ads = start_ads(store, f"127.0.0.1:{free_port()}", runtime)
    try:
        assert ads.port is not None
        fleet = envoys(ads.port, ("e-a2",))
        spec = load_spec_text(spec_text(v1.address, v2.address, "setWeight: 50", "pause: {duration: 1h}",
                                        'setHeaderRoute: {headers: [{name: x-tester, regex: "(?=lookahead)"}]}'))
        engine = runtime.engine_for(spec, store, SystemClock())
        engine.start(spec)
        engine.tick("shop")
        record = engine.tick("shop")
        assert record.route.canary_weight == 50

        source = EnvoyFleetMetricSource(open_fleet(store), settle_s=0)
        query = WindowQuery("shop", "shop", "v1", "v2", 0, 1)
        first = source.collect(query)
        split(fleet[0], 20)
        split(fleet[2], 30)
        only_b = source.collect(WindowQuery("shop", "shop", "v1", "v2", 0, 1, cursor=first.cursor, regions=("b",)))
        everyone = source.collect(WindowQuery("shop", "shop", "v1", "v2", 0, 1, cursor=first.cursor))
        assert only_b.baseline is not None and only_b.canary is not None
        assert only_b.baseline.requests + only_b.canary.requests == 30
        assert everyone.baseline is not None and everyone.canary is not None
        assert everyone.baseline.requests + everyone.canary.requests == 50

        engine.command("shop", "promote", actor="test")
        with pytest.raises(RuntimeError, match=r"rejected shop route revision \d+: invalid perl operator"):
            for _ in range(5):
                engine.tick("shop")
        wait_for("every Envoy's NACK in the store", lambda: all(
            n.nack_message and "invalid perl operator" in n.nack_message and n.nacked.get("shop", -1) >= 1
            for n in open_fleet(store).nodes()))
        for envoy in fleet:  # the rejected route never served; the accepted one still does
            seen = split(envoy, 60)
            assert set(seen) == {"v1", "v2"}
            assert envoy.stats(r"rds\.rollwise\.update_rejected$")["http.ingress.rds.rollwise.update_rejected"] == "1"
        # the NACK is the rollout's error, with Envoy's message, where people look: status and events
        rejected = store.get("shop")
        assert rejected.route_error is not None and "invalid perl operator" in rejected.route_error
        refusals = [e for e in store.events("shop") if e.type == "route-error"]
        assert len(refusals) == 1, refusals  # one event per distinct refusal, however many ticks retried
        assert f"refused route revision {rejected.route.revision}" in refusals[0].message
        from rollwise.analysis.explain import explain_route
        explained = explain_route(store.events("shop"))
        assert explained is not None and "invalid perl operator" in explained
    finally:
        ads.close()
        runtime.close()


def test_pools_health_checks_grpc_upstreams_and_tls_are_accepted_by_envoy(
        tmp_path: Path, start_service: ServiceFactory) -> None:
    """Part 2's cluster and listener shapes, ACKed by a real Envoy (a NACK would name the bad field)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    v1, v2a, v2b = start_service("v1"), start_service("v2"), start_service("v2")
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    runtime = Runtime(workdir=tmp_path / "rw", store=store)
    ads = start_ads(store, f"127.0.0.1:{free_port()}", runtime)
    envoy = None
    try:
        envoy = start_envoy(tmp_path / "envoys", "tls-1", f"127.0.0.1:{ads.port}", region="a",
                            tls_cert=str(cert), tls_key=str(key))
        pool = spec_text(v1.address, v2a.address, "setWeight: 50", "pause: {duration: 1h}").replace(
            f'canary: {{name: v2, address: "{v2a.address}"}}',
            f'canary: {{name: v2, addresses: ["{v2a.address}", "{v2b.address}"], healthCheck: {{path: /healthz}}, '
            "outlierDetection: {consecutive5xx: 3}}")
        grpc = spec_text(v1.address, v2a.address, "setWeight: 10", "pause: {duration: 1h}").replace(
            "name: shop", "name: grpc-shop").replace("name: v1,", "name: v1, protocol: grpc,").replace(
            "name: v2,", "name: v2, protocol: http2,")
        for text in (pool, grpc):
            spec = load_spec_text(text)
            engine = runtime.engine_for(spec, store, SystemClock())
            engine.start(spec)
            engine.tick(spec.name)
            assert engine.tick(spec.name).route.canary_weight > 0  # applied: the Envoy ACKed it
        [node] = open_fleet(store).nodes()
        assert set(node.confirmed) == {"shop", "grpc-shop"} and node.nack_message is None
        with httpx.Client(base_url=f"https://127.0.0.1:{envoy.listen_port}", verify=False, timeout=5) as client:
            seen = Counter(client.get(f"/item/{i}", headers={"host": "shop"}).headers.get("x-version")
                           for i in range(40))
        assert set(seen) == {"v1", "v2"}
        healthy = envoy.stats(r"cluster\.shop-v2\.(membership_healthy|health_check\.success)$")
        assert healthy["cluster.shop-v2.membership_healthy"] == "2"
    finally:
        if envoy is not None:
            envoy.stop()
        ads.close()
        runtime.close()


def test_serve_runs_the_ads_server_and_fleet_list_asks_it_over_http(tmp_path: Path,
                                                                   envoys: Callable[[int], list[LocalEnvoy]]) -> None:
    from support.serve_process import rollwise_serve

    ads_port = free_port()
    with rollwise_serve(f"sqlite:///{tmp_path / 'r.db'}", tmp_path, "--ads-listen", f"127.0.0.1:{ads_port}") as serve:
        envoys(ads_port)
        with serve.client() as client:
            wait_for("three Envoys in the API", lambda: len(client.get("/api/v1/fleet/envoys").json()) == 3)
        listed = subprocess.run([sys.executable, "-m", "rollwise", "fleet", "list", "--server", serve.url,
                                 "-o", "json"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "HOME": str(tmp_path)})
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert {(r["node_id"], r["region"], r["live"]) for r in rows} == {(n, g, True) for n, g in REGIONS.items()}
        assert all(r["versions"].get("lds") for r in rows)  # each got (and ACKed) its own listener
        seen = subprocess.run([sys.executable, "-m", "rollwise", "controllers", "--server", serve.url, "-o", "json"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
        assert seen.returncode == 0, seen.stderr
        assert [c["alive"] for c in json.loads(seen.stdout) if c["id"]] == [True]  # serve's own controller


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "rollwise", "fleet", "serve", "--ads-listen", f"127.0.0.1:{port}",
                               "--store", f"sqlite:///{tmp_path / 'r.db'}"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: --ads-listen 127.0.0.1:{port}:") and "Traceback" not in done.stderr
