"""Shared fixtures. Service-backed tests skip only when a service is missing locally; under CI
(ROLLWISE_REQUIRE_SERVICES=1) a missing service is a failure, never a skip."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/, home of shared helpers such as pg.py

from pg import postgres_url  # session fixture: a throwaway PostgreSQL database

__all__ = ["postgres_url"]

from tests_support import EXAMPLES


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
