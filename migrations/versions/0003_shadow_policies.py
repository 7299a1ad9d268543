"""Shadow policies: a policy's shadow version, the one a generation was decided against, and
shadow statistics keyed apart from live ones.

Existing statistics are live (`shadow` false). Downgrading drops the shadow rows first, so the
old key (without `shadow`) stays unique.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

LIVE_KEY = ["tenant_id", "policy_version_id", "category", "bucket_start"]


def upgrade() -> None:
    op.add_column("policies", sa.Column("shadow_version_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_policies_shadow_version_id_policy_versions"),
        "policies",
        "policy_versions",
        ["shadow_version_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("generations", sa.Column("shadow_version_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_generations_shadow_version_id_policy_versions"),
        "generations",
        "policy_versions",
        ["shadow_version_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "refusal_stats",
        sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.drop_constraint("uq_refusal_stats_key", "refusal_stats", type_="unique")
    op.create_unique_constraint("uq_refusal_stats_key", "refusal_stats", [*LIVE_KEY, "shadow"])


def downgrade() -> None:
    op.execute("DELETE FROM refusal_stats WHERE shadow")
    op.drop_constraint("uq_refusal_stats_key", "refusal_stats", type_="unique")
    op.create_unique_constraint("uq_refusal_stats_key", "refusal_stats", LIVE_KEY)
    op.drop_column("refusal_stats", "shadow")
    op.drop_constraint(
        op.f("fk_generations_shadow_version_id_policy_versions"), "generations", type_="foreignkey"
    )
    op.drop_column("generations", "shadow_version_id")
    op.drop_constraint(
        op.f("fk_policies_shadow_version_id_policy_versions"), "policies", type_="foreignkey"
    )
    op.drop_column("policies", "shadow_version_id")
