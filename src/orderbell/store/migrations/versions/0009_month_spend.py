"""month spend: a shop's spending this month, kept with its account

Revision ID: 0009
Revises: 0008

A shop with a monthly spending cap had every message it planned sum the month's ledger
entries (``month_spend``): the cost of a decision grew with the month, to ~80 ms an event at
100,000 entries. The account now keeps the sum for one month, ``[cap_from, cap_until)``:
every ledger write that reserves, releases, debits or refunds credit inside that month adds
to ``cap_spent`` in the same statement that moves the account's figures. ``cap_from`` is
NULL until a decision first needs the month (it is then summed from the ledger once) and
again whenever a write spans the month's boundary; every existing account starts that way.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orderbell.store.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cap_from", orderbell.store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("cap_until", orderbell.store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("cap_spent", sa.Numeric(precision=18, scale=6), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_accounts", schema=None) as batch_op:
        batch_op.drop_column("cap_spent")
        batch_op.drop_column("cap_until")
        batch_op.drop_column("cap_from")
