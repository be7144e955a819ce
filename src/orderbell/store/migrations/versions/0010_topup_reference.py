"""top-up reference: a retried top-up with the same reference is credited once

Revision ID: 0010
Revises: 0009

A top-up's reference (e.g. a payment id) now identifies it within its shop: posting it again
with the same amount answers with the first one instead of crediting twice, with another
amount it is a conflict. The lookup runs under the account's lock, through a partial index
of top-up entries only (no reservation, debit or release is ever written to it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TOPUPS = sa.text("kind = 'topup'")


def upgrade() -> None:
    op.create_index(
        "ix_ledger_topup_reference",
        "ledger",
        ["shop_id", "reference"],
        unique=False,
        sqlite_where=_TOPUPS,
        postgresql_where=_TOPUPS,
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_topup_reference", table_name="ledger")
