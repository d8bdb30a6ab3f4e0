"""A flag kill on one of three real ``rollwise serve --flags`` replicas: how long until all three serve it.

Three servers on one fresh PostgreSQL database, each with its own copy of the flag file (as on its
own host). ``--changes`` times, a random replica kills (or restores) the flag through the API; the
clock runs from the request until each replica's OFREP evaluation answers the new variant (each
replica polled every 5 ms by its own thread). Reported: p50 / p99 / max over all replica-changes,
the slowest replica per change included.

    python bench/flag_fleet.py --changes 60 --output bench/results/flag-fleet.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
FLAGS = {"flags": {"banner": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(store: str, home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    (home / "flags.json").write_text(json.dumps(FLAGS))
    port = _port()
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rollwise", "serve", "--port", str(port), "--store", store,
                             "--flags", str(home / "flags.json")], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "HOME": str(home), **env}, cwd=home)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"rollwise serve did not start: {(home / 'serve.log').read_text()[-2000:]}")


def _wait_variant(url: str, token: str, variant: str, started: float, out: list[float]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        while time.monotonic() - started < 30:
            if client.post("/ofrep/v1/evaluate/flags/banner", json={}).json().get("variant") == variant:
                out.append(time.monotonic() - started)
                return
            time.sleep(0.005)
    out.append(float("inf"))


def _row(what: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"| {what} | {len(ordered)} | {1000 * ordered[len(ordered) // 2]:.0f} "
            f"| {1000 * ordered[int(0.99 * (len(ordered) - 1))]:.0f} | {1000 * ordered[-1]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    database = f"rollwise_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    store = SERVER.rsplit("/", 1)[0] + "/" + database
    procs: list[subprocess.Popen[bytes]] = []
    try:
        from rollwise.adapters.stores.sql import SqlStore
        from rollwise.adapters.stores.sql_audit import SqlTokenRepository

        with SqlStore(store) as opened:
            releaser = SqlTokenRepository(opened).create("bench", "releaser")[1]
        env = {"ROLLWISE_AUDIT_KEY": secrets.token_hex(32)}
        urls = []
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(3):
                home = Path(tmp) / f"replica{index}"
                home.mkdir()
                proc, url = _serve(store, home, env)
                procs.append(proc)
                urls.append(url)
            rng = random.Random(14)
            requests: list[float] = []  # the change request on the origin, until it answered
            fanout: list[float] = []  # from that answer until each other replica served the change
            for change in range(args.changes):
                action, variant = ("kill", "off") if change % 2 == 0 else ("restore", "on")
                origin = rng.choice(urls)
                others = [u for u in urls if u != origin]
                started = time.monotonic()
                seen: list[float] = []
                waiters = [threading.Thread(target=_wait_variant, args=(u, releaser, variant, started, seen))
                           for u in others]
                for waiter in waiters:
                    waiter.start()
                reply = httpx.post(f"{origin}/api/v1/flags/banner/{action}", json={"reason": "bench"},
                                   headers={"Authorization": f"Bearer {releaser}"}, timeout=10)
                answered = time.monotonic() - started
                assert reply.status_code == 200, reply.text
                for waiter in waiters:
                    waiter.join()
                requests.append(answered)
                fanout.extend(max(0.0, s - answered) for s in seen)
                time.sleep(0.2)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    lines = ["# A flag change on one of three `rollwise serve` replicas, visible on all", "",
             f"Command: `python bench/flag_fleet.py --changes {args.changes}"
             + (f" --output {args.output}`" if args.output else "`"), "",
             f"Three servers and PostgreSQL on this machine (2 cores, shared; load average {os.getloadavg()[0]:.1f} "
             "at the end). A kill or restore through the API of a random replica; the other two replicas' OFREP "
             "answers are polled every 5 ms from before the request.", "",
             "| measured | n | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|",
             _row("the change request on the origin (until it answered)", requests),
             _row("origin answered → another replica serves it", fanout),
             _row("request sent → another replica serves it", [r + f for r, f in zip(
                 [r for r in requests for _ in (0, 1)], fanout, strict=True)])]
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output:
        Path(args.output).write_text(report)


if __name__ == "__main__":
    main()
