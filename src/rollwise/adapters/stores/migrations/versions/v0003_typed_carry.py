"""A rollout's carry in its typed shape (``rollwise.core.carry.Carry``), and no ``-1`` sentinels.

Before: ``carry`` was a dict of magic keys; a person's promote was ``forced_step`` (``-1`` for
blue/green) plus ``forced_by``, the judges' own state sat beside the engine's keys, and an approved
blue/green cutover was ``approved_step: -1``. After: ``carry.promotion`` ({actor, reason, step},
step null for blue/green), ``carry.judges`` holding every key the engine does not own, and
``cutover_approved: true``. The code still reads the old shape, so this only makes stored rows
say what they mean. Written out by hand: a migration is a frozen record of that revision.

Revision ID: typed_carry
Revises: route_applied
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "typed_carry"
down_revision = "route_applied"
branch_labels = None
depends_on = None

# The keys the engine owns, as they were in the old shape and are in the new one.
_ENGINE = ("approval", "hold", "cap_base", "history", "metrics_error", "stopped", "retired")
_PROMOTE = ("forced_step", "forced_by")


def typed(state: dict[str, Any]) -> dict[str, Any]:
    """A stored record's state with its carry in the typed shape (a typed one is returned unchanged)."""
    old = state.get("carry") or {}
    carry = {k: v for k, v in old.items() if k in _ENGINE or k in ("promotion", "judges")}
    judges = dict(old.get("judges") or {})
    judges.update({k: v for k, v in old.items() if k not in carry and k not in _PROMOTE})
    carry["judges"] = judges
    if "forced_step" in old:
        by = old["forced_by"] if isinstance(old.get("forced_by"), dict) else {}
        carry["promotion"] = {"actor": by.get("actor", "unknown"), "reason": by.get("reason", ""),
                              "step": None if old["forced_step"] == -1 else old["forced_step"]}
    updated = {**state, "carry": carry}
    if state.get("approved_step") == -1:
        updated.update(approved_step=None, cutover_approved=True)
    return updated


def untyped(state: dict[str, Any]) -> dict[str, Any]:
    """The old shape back: judges' keys beside the engine's, a promote as ``forced_step``/``forced_by``."""
    new = dict(state.get("carry") or {})
    judges = new.pop("judges", None) or {}
    promotion = new.pop("promotion", None)
    # The old code read a key's presence as meaning (``"history" in carry``): unset fields are left out.
    carry = {**judges, **{k: v for k, v in new.items() if k in _ENGINE and v is not None}}
    if isinstance(promotion, dict):
        step = promotion.get("step")
        carry["forced_step"] = -1 if step is None else step
        carry["forced_by"] = {"actor": promotion.get("actor", "unknown"), "reason": promotion.get("reason", "")}
    updated = {k: v for k, v in state.items() if k != "cutover_approved"}
    updated["carry"] = carry
    if state.get("cutover_approved"):
        updated["approved_step"] = -1
    return updated


def _rewrite(change: Any) -> None:
    conn = op.get_bind()
    rollouts = sa.table("rollouts", sa.column("name", sa.String), sa.column("state", sa.JSON))
    for row in conn.execute(sa.select(rollouts.c.name, rollouts.c.state)):
        state: Any = row.state if isinstance(row.state, dict) else json.loads(row.state)
        updated = change(state)
        if updated != state:
            conn.execute(sa.update(rollouts).where(rollouts.c.name == row.name).values(state=updated))


def upgrade() -> None:
    _rewrite(typed)


def downgrade() -> None:
    _rewrite(untyped)
