"""At most one open incident per service (``adapters/stores/sql_watch.py``), enforced by the database.

Watch leases give each service one watcher, but a watcher that stalls past its lease can still write
after another took over; a partial unique index on ``service`` where ``status = 'open'`` makes the
second open fail, and the watcher adopts the first. Before the index, any service left with several
open incidents keeps its newest open and the older ones are resolved when the newer one opened (their
body says so too, with a note). Written out by hand: a migration is a frozen record of that revision.

Revision ID: one_open_incident
Revises: watch_changes
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "one_open_incident"
down_revision = "watch_changes"
branch_labels = None
depends_on = None

_INCIDENTS = sa.table("watch_incidents", sa.column("id", sa.BigInteger), sa.column("service", sa.String),
                      sa.column("opened_at", sa.Double), sa.column("status", sa.String),
                      sa.column("resolved_at", sa.Double), sa.column("body", sa.JSON))


def _body(value: Any) -> dict[str, Any]:
    return dict(json.loads(value) if isinstance(value, str) else value)


def _close_duplicates() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_INCIDENTS).where(_INCIDENTS.c.status == "open")
                        .order_by(_INCIDENTS.c.service, _INCIDENTS.c.id)).mappings().all()
    newest: dict[str, Any] = {}
    for row in rows:
        newest[row["service"]] = row
    for row in rows:
        keeper = newest[row["service"]]
        if row["id"] == keeper["id"]:
            continue
        at = max(float(keeper["opened_at"]), float(row["opened_at"]))
        body = {**_body(row["body"]), "status": "resolved", "resolved_at": at,
                "note": f"superseded by incident #{keeper['id']} (one open incident per service)"}
        conn.execute(sa.update(_INCIDENTS).where(_INCIDENTS.c.id == row["id"])
                     .values(status="resolved", resolved_at=at, body=body))


def upgrade() -> None:
    _close_duplicates()
    op.create_index("ux_watch_incidents_open_service", "watch_incidents", ["service"], unique=True,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_index("ux_watch_incidents_open_service", "watch_incidents")
