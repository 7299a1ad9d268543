"""Leak monitoring: answered requests checked for refusal text after the `[respond]` token.

`refusal_stats` counts the checked answers and those that read as a refusal (per tenant, policy
version, category and bucket, like every other count); `generations` keeps each checked row's
verdict and the matched phrase, so an admin can open the examples. Existing rows read 0 checks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
