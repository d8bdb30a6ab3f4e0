"""A real ``rollwise serve`` process: tokens in URLs, KPI values, body limits, 422 replies.

* ``?access_token=`` works on the event stream only; anywhere else it is refused (400) and the
  token never appears in what the server prints (its access log shows ``[redacted]``).
* A KPI push with NaN, infinity or a negative value is a 422 naming the field, and nothing is stored.
* Request bodies over the limit get 413, before the body is read whole (declared Content-Length)
  or as it streams (chunked), on every route that reads a body.
* A 422 never echoes the request body back.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from rollwise.adapters.stores.sql import SqlStore, kpi_samples_table
from rollwise.core.clock import SystemClock
from rollwise.core.engine import RolloutEngine
from rollwise.spec import load_spec_text
from support.api import file_spec, make_tokens


@dataclass
class ServeProcess:
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        """Everything the server printed (stdout and stderr), after it stopped."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def rollwise_serve(store_url: str, tmp_path: Path, *extra: str) -> Iterator[ServeProcess]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rollwise", "serve", "--port", str(port), "--store", store_url, "--no-controller",
             "--log-level", "info", *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )
    served = ServeProcess(f"http://127.0.0.1:{port}", log_path, proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rollwise serve did not start: {served.output()}")
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _seed_rollout(store_url: str, tmp_path: Path, name: str = "shop") -> None:
    with SqlStore(store_url) as store:
        RolloutEngine(store=store, clock=SystemClock()).start(load_spec_text(file_spec(name, tmp_path / "r.json")))


def _kpi_rows(store_url: str) -> int:
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(kpi_samples_table)).scalar_one())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- item 4: tokens in URLs


def test_url_token_only_on_the_event_stream_and_never_logged(store_url: str, tmp_path: Path) -> None:
    tokens = make_tokens(store_url)
    _seed_rollout(store_url, tmp_path)
    with rollwise_serve(store_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        admin = tokens["admin"]
        # Writes and reads with the token in the URL: refused before any route runs.
        refused = [
            client.post(f"/api/v1/rollouts/shop/pause?access_token={admin}", json={"reason": "x"}),
            client.post(f"/api/v1/rollouts/shop/kpis?access_token={admin}",
                        json={"version": "v2", "metric": "checkouts"}),
            client.post(f"/api/v1/tokens?reason=x&access_token={admin}", json={"name": "m", "role": "admin"}),
            client.get(f"/api/v1/rollouts?access_token={tokens['viewer']}"),
            client.get(f"/api/v1/audit?access%5Ftoken={admin}"),
        ]
        for response in refused:
            assert response.status_code == 400, (response.request.url.path, response.text)
            assert "Authorization: Bearer" in response.json()["detail"]
        rollout = client.get("/api/v1/rollouts/shop", headers=_bearer(tokens["viewer"])).json()
        assert rollout["phase"] != "Paused"
        assert _kpi_rows(store_url) == 0
        # The same writes with the header pass.
        assert client.post("/api/v1/rollouts/shop/pause", json={"reason": "x"},
                           headers=_bearer(admin)).status_code == 200
        # The event stream takes the token from the URL (EventSource cannot send headers).
        with client.stream("GET", f"/api/v1/events/stream?max_seconds=0.5&access_token={tokens['viewer']}") as stream:
            assert stream.status_code == 200
            assert "event: hello" in stream.read().decode()
        assert client.get("/api/v1/events/stream?max_seconds=0.5&access_token=rw_not-a-token").status_code == 401
    output = server.output()
    assert "/api/v1/events/stream?max_seconds=0.5&access_token=[redacted]" in output, output
    assert "/api/v1/rollouts/shop/pause?access_token=[redacted]" in output, output
    for secret in tokens.values():
        assert secret not in output
    assert "rw_not-a-token" not in output
    assert "Traceback" not in output


# --------------------------------------------------------------------------- item 8: KPI values


def test_kpi_push_refuses_nan_infinity_and_negative_values(store_url: str, tmp_path: Path) -> None:
    tokens = make_tokens(store_url)
    _seed_rollout(store_url, tmp_path)
    headers = {**_bearer(tokens["deployer"]), "Content-Type": "application/json"}
    bodies = {
        '{"version": "v2", "metric": "checkouts", "value": NaN}': "value",
        '{"version": "v2", "metric": "checkouts", "value": Infinity}': "value",
        '{"version": "v2", "metric": "checkouts", "value": -Infinity}': "value",
        '{"version": "v2", "metric": "checkouts", "value": 1e999}': "value",
        '{"version": "v2", "metric": "checkouts", "value": -3}': "value",
        '{"version": "v2", "metric": "checkouts", "value": 1, "at": NaN}': "at",
        '{"version": "v2", "metric": "checkouts", "value": 1, "at": -5}': "at",
    }
    with rollwise_serve(store_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for body, field in bodies.items():
            response = client.post("/api/v1/rollouts/shop/kpis", content=body, headers=headers)
            assert response.status_code == 422, (body, response.status_code, response.text)
            assert [p["field"] for p in response.json()["detail"]] == [field], response.text
        assert _kpi_rows(store_url) == 0
        ok = client.post("/api/v1/rollouts/shop/kpis", content='{"version": "v2", "metric": "checkouts", "value": 2}',
                         headers=headers)
        assert ok.status_code == 201, ok.text
    assert _kpi_rows(store_url) == 1
    assert "Traceback" not in server.output()


# --------------------------------------------------------------------------- item 8: body size, 422 echo


def _declared_only(url: str, path: str, length: int) -> bytes:
    """Send headers declaring ``length`` bytes and none of the body: the answer must not wait for it."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())
        return sock.recv(4096)


def test_bodies_over_the_limit_get_413_before_being_read(store_url: str, tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"flags": {"banner": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                                      "defaultVariant": "on"}}}))
    _seed_rollout(store_url, tmp_path)
    limit = 4096
    routes = ["/api/v1/rollouts", "/api/v1/rollouts/shop/spec", "/api/v1/rollouts/shop/kpis",
              "/api/v1/rollouts/shop/pause", "/api/v1/tokens", "/api/v1/flags/banner/kill",
              "/ofrep/v1/evaluate/flags/banner", "/ofrep/v1/evaluate/flags"]
    big = b'{"reason": "' + b"x" * (limit * 4) + b'"}'

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"y" * 1024

    with rollwise_serve(store_url, tmp_path, "--max-body-bytes", str(limit), "--flags", str(flags)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for path in routes:
            method = "PUT" if path.endswith("/spec") else "POST"
            sized = client.request(method, path, content=big, headers={"Content-Type": "application/json"})
            assert sized.status_code == 413, (path, sized.status_code, sized.text[:200])
            chunked = client.request(method, path, content=chunks(), headers={"Content-Type": "application/json"})
            assert chunked.status_code == 413, (path, chunked.status_code, chunked.text[:200])
            assert len(chunked.content) < 200
        # Ten gigabytes declared, none sent: the 413 comes back at once.
        assert _declared_only(server.url, "/api/v1/rollouts/shop/kpis", 10 * 1024**3).startswith(b"HTTP/1.1 413")
        # Below the limit, bodies still work.
        small = client.post("/api/v1/rollouts/shop/kpis", json={"version": "v2", "metric": "checkouts"})
        assert small.status_code == 201, small.text
        assert client.post("/api/v1/rollouts/shop/pause", json={"reason": "fine"}).status_code == 200
    assert _kpi_rows(store_url) == 1
    assert "Traceback" not in server.output()


def test_422_never_echoes_the_body(store_url: str, tmp_path: Path) -> None:
    _seed_rollout(store_url, tmp_path)
    marker = "Q" * 300_000
    with rollwise_serve(store_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        cases = [
            ("/api/v1/rollouts/shop/kpis", {"version": "v2", "metric": marker}),
            ("/api/v1/rollouts/shop/kpis", {"version": "v2", "metric": "m", marker: 1}),
            ("/api/v1/rollouts/shop/pause", {"reason": marker}),
            ("/api/v1/tokens", {"name": "n", "role": marker}),
        ]
        for path, body in cases:
            response = client.post(path, json=body)
            assert response.status_code == 422, (path, response.status_code)
            assert len(response.content) < 2000, (path, len(response.content))
            assert "Q" * 250 not in response.text
            assert response.json()["detail"][0]["field"]
        # The default limit (1 MiB) holds without any option.
        too_big = client.post("/api/v1/rollouts/shop/kpis", json={"version": "v2", "metric": "m" * (2 << 20)})
        assert too_big.status_code == 413 and len(too_big.content) < 200
