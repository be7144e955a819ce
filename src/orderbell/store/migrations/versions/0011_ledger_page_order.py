"""ledger page order: the shop's index ends with the entry's id

Revision ID: 0011
Revises: 0010

A page of a shop's ledger is listed newest first by (at, id), and resumed after the previous
page's last entry. With the id as the index's last column the index gives exactly that
order on both databases, so a page is read without sorting anything (SQLite's index carried
the rowid already; PostgreSQL's sorted the entries of each instant).
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_shop_at", table_name="ledger")
    op.create_index("ix_ledger_shop_at", "ledger", ["shop_id", "at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ledger_shop_at", table_name="ledger")
    op.create_index("ix_ledger_shop_at", "ledger", ["shop_id", "at"], unique=False)
