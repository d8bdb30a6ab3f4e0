"""Every store test runs against SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.pg import postgres_schema  # tests/conftest.py puts tests/ on sys.path and provides postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each kind, private to the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollwise.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url
