"""LocalProcessDeployer, LoadGenerator bounds and the KPI client's wire format."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from rollwise.adapters.deployers.local import DeployError, LocalProcessDeployer
from rollwise.demo.load import LoadError, LoadGenerator
from rollwise.spec.models import VersionRef
from support.processes import ServiceFactory

SERVICE = f"{sys.executable} -m rollwise.demo.service --port {{port}} --version {{name}}"


def demo(name: str, **extra: object) -> VersionRef:
    return VersionRef(name=name, command=SERVICE.replace("{name}", name), **extra)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(60)
def test_deployer_starts_waits_for_health_is_idempotent_and_stops_by_pid(tmp_path: Path) -> None:
    deployer = LocalProcessDeployer(tmp_path / "logs")
    try:
        version = demo("v2")
        address = deployer.ensure("shop", version)
        pid = deployer.pid("shop", "v2")
        assert pid is not None
        response = httpx.get(f"http://{address}/item/1")
        assert response.status_code == 200 and response.headers["x-version"] == "v2"

        assert deployer.ensure("shop", version) == address  # idempotent: same process
        assert deployer.pid("shop", "v2") == pid

        deployer.stop("shop", version)
        assert deployer.pid("shop", "v2") is None
        assert not alive(pid)
        assert "rollwise.demo.service" in (tmp_path / "logs" / "shop-v2.log").read_text()
    finally:
        deployer.close()


@pytest.mark.timeout(60)
def test_deployer_restarts_a_dead_version_and_honours_a_fixed_port(tmp_path: Path) -> None:
    from rollwise.local_processes import free_port

    port = free_port()
    deployer = LocalProcessDeployer(tmp_path)
    try:
        version = demo("v1", port=port)
        assert deployer.ensure("shop", version) == f"127.0.0.1:{port}"
        first = deployer.pid("shop", "v1")
        assert first is not None
        os.kill(first, 9)
        # A killed multi-threaded process shows "Z" before waitpid reports it: wait for the latter.
        while deployer.is_running("shop", "v1"):
            time.sleep(0.01)
        assert deployer.ensure("shop", version) == f"127.0.0.1:{port}"
        second = deployer.pid("shop", "v1")
        assert second not in (None, first), f"first pid {first}, second {second}"
    finally:
        deployer.close()


@pytest.mark.timeout(30)
def test_deployer_reports_a_version_that_dies_with_its_log(tmp_path: Path) -> None:
    deployer = LocalProcessDeployer(tmp_path)
    broken = VersionRef(
        name="v3", command=f"{sys.executable} -c \"import sys; print('boom: bad config'); sys.exit(3)\""
    )
    with pytest.raises(DeployError, match=r"exited with 3(.|\n)*boom: bad config"):
        deployer.ensure("shop", broken)


@pytest.mark.timeout(30)
def test_deployer_gives_up_on_a_version_that_never_gets_healthy(tmp_path: Path) -> None:
    deployer = LocalProcessDeployer(tmp_path)
    never = VersionRef(name="v4", command=f"{sys.executable} -c 'import time; time.sleep(60)'", readyTimeout="1s")
    with pytest.raises(DeployError, match=r"not ready within 1\.0s"):
        deployer.ensure("shop", never)
    assert deployer.pid("shop", "v4") is None


def test_deployer_returns_given_addresses_without_a_process(tmp_path: Path) -> None:
    deployer = LocalProcessDeployer(tmp_path)
    assert deployer.ensure("shop", VersionRef(name="v1", address="127.0.0.1:8001")) == "127.0.0.1:8001"
    assert deployer.pid("shop", "v1") is None


@pytest.mark.parametrize("url", ["http://10.0.0.1:80", "http://example.com", "http://192.168.1.2:8080/x"])
def test_load_generator_refuses_targets_off_loopback(url: str) -> None:
    with pytest.raises(LoadError, match="only loopback"):
        LoadGenerator(url, rate=10, duration_s=1)


def test_load_generator_refuses_unbounded_runs() -> None:
    with pytest.raises(LoadError, match="duration_s"):
        LoadGenerator("http://127.0.0.1:1", rate=10, duration_s=3600)
    with pytest.raises(LoadError, match="rate"):
        LoadGenerator("http://127.0.0.1:1", rate=0)


@pytest.mark.timeout(30)
def test_load_generator_is_open_loop_bounded_and_records_versions(start_service: ServiceFactory) -> None:
    service = start_service("v7", error_rate=0.5)
    load = LoadGenerator(service.url, rate=200, duration_s=1, total=120, sticky_header="x-user", users=5)
    summary = load.run()

    assert summary.sent == 120  # the count bound wins over 200 req/s x 1 s
    assert summary.by_version == {"v7": 120}
    assert summary.failures == summary.by_status.get(500, 0) > 0
    assert summary.transport_errors == 0
    assert {s.user for s in load.samples} <= {f"user-{n}" for n in range(5)}


@pytest.mark.timeout(10)
def test_load_generator_counts_connection_failures() -> None:
    from rollwise.local_processes import free_port

    summary = LoadGenerator(f"http://127.0.0.1:{free_port()}", rate=50, duration_s=0.2).run()
    assert summary.sent == 10 and summary.failures == summary.transport_errors == 10


@pytest.mark.timeout(30)
def test_load_takes_several_targets_in_turn_and_a_header_fault_hits_only_its_requests(
        start_service: ServiceFactory) -> None:
    """The regions demo's two pieces: load spread over a fleet, and v2 failing only where a header says so."""
    plain, faulty = start_service("v1"), start_service("v2", error_rate=1.0, fail_header="x-rollwise-region=b")
    load = LoadGenerator([plain.url, faulty.url], rate=200, duration_s=1, total=40)
    summary = load.run()
    assert summary.by_version == {"v1": 20, "v2": 20} and summary.failures == 0  # no header: v2 never fails
    assert {s.target for s in load.samples} == {plain.url, faulty.url}

    with httpx.Client(base_url=faulty.url, timeout=5) as client:
        assert client.get("/item/1", headers={"x-rollwise-region": "b"}).status_code == 500
        assert client.get("/item/1", headers={"x-rollwise-region": "a"}).status_code == 200
