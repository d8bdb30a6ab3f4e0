"""Shared fixtures and the service markers.

Tests live in folders that mirror ``src/rollwise``; what a test needs from the machine is a marker,
not a folder: ``envoy``, ``postgres``, ``prometheus``, ``browser`` (and ``slow``). Tests that use the
fixtures starting those services are marked automatically, so ``pytest -m "not envoy"`` runs
everything that does not need Envoy. Service-backed tests skip only when a service is missing
locally; under CI (ROLLWISE_REQUIRE_SERVICES=1) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: the `support` package

from support.common import EXAMPLES

pytest_plugins = ["support.pg", "support.processes", "support.reports", "support.api", "support.browser"]

# a fixture that starts a service -> the marker every test using it carries
SERVICE_FIXTURES = {
    "envoy_router": "envoy",
    "prometheus_binary": "prometheus",
    "postgres_url": "postgres",
    "browser": "browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in SERVICE_FIXTURES:
                item.add_marker(SERVICE_FIXTURES[fixture])


@pytest.fixture(autouse=True, scope="session")
def audit_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One audit key for the session (children inherit it), never the developer's ~/.rollwise/audit.key."""
    path = tmp_path_factory.mktemp("audit-key") / "audit.key"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROLLWISE_AUDIT_KEY_FILE", str(path))
        patch.delenv("ROLLWISE_AUDIT_KEY", raising=False)
        yield path


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES
