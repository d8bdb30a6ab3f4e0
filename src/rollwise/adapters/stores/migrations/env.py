"""Alembic environment for the SQL store.

``SqlStore.migrate`` hands over a connection already inside a locked transaction (so concurrent
openers run migrations one at a time); the command-line ``alembic`` can still be pointed at a
database with ``-x url=...`` for inspection or offline SQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

VERSION_TABLE = "rollwise_schema_version"  # keep in step with rollwise.adapters.stores.sql

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database as: alembic -x url=sqlite:///path/to/rollwise.db ...")
    return url


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, version_table=VERSION_TABLE)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
