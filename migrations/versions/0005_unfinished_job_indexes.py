"""Partial indexes on the rows still to do, for the lost-task check that beat runs.

Every 30 s the check reads the queued and running generations and calibration runs older than
its grace period; these indexes hold only those rows, so the read stays small however many final
rows the tables keep.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    for table in ("generations", "calibration_runs"):
        op.create_index(
            op.f(f"ix_{table}_unfinished_created_at"),
            table,
            ["created_at"],
            postgresql_where=UNFINISHED,
        )


def downgrade() -> None:
    for table in ("generations", "calibration_runs"):
        op.drop_index(op.f(f"ix_{table}_unfinished_created_at"), table_name=table)
