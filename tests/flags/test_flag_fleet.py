"""Three real ``rollwise serve --flags`` replicas on one PostgreSQL: a change made on one is served by all.

Each replica has its own copy of the flag file (its own folder, as on its own host); the store
holds the fleet's document and LISTEN/NOTIFY tells the others. Asserted loosely (5 s) here; the
p99 over many kills is ``bench/flag_fleet.py``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from support.api import FLAGS, make_tokens
from support.pg import postgres_schema
from support.serve_process import ServeProcess, rollwise_serve

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # ~40 s: three servers start
VISIBLE_WITHIN_S = 5.0
OFREP = "/ofrep/v1/evaluate/flags/{}"


@pytest.fixture
def store_url(postgres_url: str) -> Iterator[str]:
    with postgres_schema(postgres_url) as url:
        yield url


def _variant(client: httpx.Client, flag: str) -> str:
    reply = client.post(OFREP.format(flag), json={"context": {"targetingKey": "u1"}})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["variant"])


def _until_all(clients: list[httpx.Client], flag: str, variant: str, started: float) -> list[float]:
    """Seconds until each replica serves ``variant`` for ``flag``."""
    seen: dict[int, float] = {}
    while len(seen) < len(clients) and time.monotonic() - started < 30:
        for index, client in enumerate(clients):
            if index not in seen and _variant(client, flag) == variant:
                seen[index] = time.monotonic() - started
        time.sleep(0.01)
    assert len(seen) == len(clients), f"{flag}: only replicas {sorted(seen)} serve {variant!r} after 30 s"
    return [seen[i] for i in range(len(clients))]


@pytest.mark.timeout(300)
def test_a_kill_on_one_replica_is_served_by_all_three(store_url: str, tmp_path: Path) -> None:
    tokens = make_tokens(store_url)
    env = {"ROLLWISE_AUDIT_KEY": secrets.token_hex(32)}  # a fleet shares its audit key
    with ExitStack() as stack:
        servers: list[ServeProcess] = []
        for index in range(3):
            home = tmp_path / f"replica{index}"
            home.mkdir()
            (home / "flags.json").write_text(json.dumps(FLAGS))
            servers.append(stack.enter_context(
                rollwise_serve(store_url, home, "--flags", str(home / "flags.json"), env=env)))
        viewers = [stack.enter_context(server.client(tokens["viewer"])) for server in servers]
        releasers = [stack.enter_context(server.client(tokens["releaser"])) for server in servers]
        assert [_variant(c, "banner") for c in viewers] == ["on"] * 3

        started = time.monotonic()
        killed = releasers[1].post("/api/v1/flags/banner/kill", json={"reason": "incident on replica 1"})
        assert killed.status_code == 200, killed.text
        delays = _until_all(viewers, "banner", "off", started)
        assert max(delays) < VISIBLE_WITHIN_S, delays

        # changes made on different replicas both survive (each change starts from the fleet's newest)
        assert releasers[0].post("/api/v1/flags/banner/restore", json={"reason": "fixed"}).status_code == 200
        assert releasers[2].post("/api/v1/flags/new-checkout/kill", json={"reason": "other"}).status_code == 200
        _until_all(viewers, "banner", "on", time.monotonic())
        _until_all(viewers, "new-checkout", "off", time.monotonic())
        # each replica's file (its cache) now holds the fleet's document
        documents = {(tmp_path / f"replica{i}" / "flags.json").read_text() for i in range(3)}
        assert len(documents) == 1
