"""`generations.first_token`: a stored summary's numbers as a typed array, for what-if replay.

A generated column (PostgreSQL computes it whenever `summary` is written), so the application
keeps one stored form of a summary and replay reads float8 values instead of parsing JSON (about
3x faster over a window). Adding a stored generated column rewrites the table: on a large
`generations` table, run this upgrade in a maintenance window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"

# Written out, not imported: a migration keeps the expression of its day.
FIRST_TOKEN_SQL = (
    "CASE WHEN summary IS NULL THEN NULL ELSE ARRAY["
    + ", ".join(f"coalesce((summary->'s'->>{c})::float8, '-Infinity')" for c in range(5))
    + ", (summary->>'m')::float8, (summary->>'l1')::float8, (summary->>'lt')::float8"
    ", (summary->>'temperature')::float8] END"
)


def upgrade() -> None:
    op.add_column(
        "generations",
        sa.Column(
            "first_token",
            postgresql.ARRAY(postgresql.DOUBLE_PRECISION()),
            sa.Computed(FIRST_TOKEN_SQL, persisted=True),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("generations", "first_token")
