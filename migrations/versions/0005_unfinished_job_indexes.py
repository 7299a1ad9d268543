"""Partial indexes on the rows still to do, for the lost-task check that beat runs.

Every 30 s the check reads the queued and running generations and calibration runs older than
its grace period; these indexes hold only those rows, so the read stays small however many final
rows the tables keep.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

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
