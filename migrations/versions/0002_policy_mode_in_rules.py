"""One column of truth for a policy version: the mode lives in `rules` only.

`policy_versions.rules` always held `{"mode", "categories"}` beside a `mode` column that said the
same; the column goes. Upgrading writes the column's value into the JSON first (so a row whose
JSON lacked its mode keeps it); downgrading restores the column from the JSON.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("UPDATE policy_versions SET rules = jsonb_set(rules, '{mode}', to_jsonb(mode))")
    op.drop_constraint(op.f("ck_policy_versions_mode"), "policy_versions", type_="check")
    op.drop_column("policy_versions", "mode")


def downgrade() -> None:
    op.add_column("policy_versions", sa.Column("mode", sa.String(length=16), nullable=True))
    op.execute("UPDATE policy_versions SET mode = rules->>'mode'")
    op.alter_column("policy_versions", "mode", nullable=False)
    op.create_check_constraint(
        op.f("ck_policy_versions_mode"), "policy_versions", "mode IN ('bias', 'threshold')"
    )
