"""one claim index: drop ix_messages_pending_due, claims walk (category, due_at) only

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:00:00

With both partial indexes on pending messages, PostgreSQL's planner took the claim of due
order updates through ix_messages_pending_due (due_at alone) and filtered on category: with
a campaign's wave of a million marketing messages due, every claim walked the whole wave to
find the order updates (0.9 s a claim on 5 M pending). Its row estimates for
``due_at <= now`` come from the whole table (sent history included), so cost cannot tell
the two indexes apart reliably. Without the due_at index the claim can only take the
(category, due_at) range it asks for; the "next due" lookup takes the first entry of each
category's range instead. One index fewer to update on every change of status, too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING = sa.text("status IN ('scheduled', 'deferred')")


def upgrade() -> None:
    op.drop_index("ix_messages_pending_due", table_name="messages")


def downgrade() -> None:
    op.create_index(
        "ix_messages_pending_due",
        "messages",
        ["due_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
