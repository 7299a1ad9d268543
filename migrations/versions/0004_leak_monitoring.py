"""Leak monitoring: answered requests checked for refusal text after the `[respond]` token.

`refusal_stats` counts the checked answers and those that read as a refusal (per tenant, policy
version, category and bucket, like every other count); `generations` keeps each checked row's
verdict and the matched phrase, so an admin can open the examples. Existing rows read 0 checks.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    for name in ("leak_checks", "leaks"):
        op.add_column(
            "refusal_stats",
            sa.Column(name, sa.Integer(), server_default="0", nullable=False),
        )
    op.add_column("generations", sa.Column("leak", sa.Boolean(), nullable=True))
    op.add_column("generations", sa.Column("leak_phrase", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_generations_leaks",
        "generations",
        ["tenant_id", "created_at"],
        postgresql_where=sa.text("leak"),
    )


def downgrade() -> None:
    op.drop_index("ix_generations_leaks", table_name="generations")
    op.drop_column("generations", "leak_phrase")
    op.drop_column("generations", "leak")
    op.drop_column("refusal_stats", "leaks")
    op.drop_column("refusal_stats", "leak_checks")
