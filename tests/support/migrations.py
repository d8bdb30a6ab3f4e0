"""Move a SQL store's schema to one migration (older schemas, for upgrade tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from rollwise.adapters.stores.sql import SqlStore


def migrate(store: SqlStore, revision: str, action: str = "upgrade") -> None:
    """Run alembic's ``action`` (``upgrade`` or ``downgrade``) to ``revision`` on ``store``'s database."""
    config = Config()
    config.set_main_option("script_location", "rollwise.adapters.stores:migrations")
    with store.write() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)
