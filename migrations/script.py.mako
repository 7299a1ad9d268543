"""${message}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

${imports if imports else ""}

# Alembic reads these names; the revision ids stand here once, not again in the docstring.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
% if branch_labels:
branch_labels = ${repr(branch_labels)}
% endif
% if depends_on:
depends_on = ${repr(depends_on)}
% endif


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
