"""workers at scale: a claim index per category, and NOTIFY on due inserts (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 08:00:00

The fair claim takes due transactional messages before marketing ones, so it walks pending
messages by (category, due_at). On PostgreSQL a statement-level trigger sends
``NOTIFY orderbell_due`` when an INSERT adds a message that is due now, so idle workers
wake at once instead of at their next poll (notifications in one transaction collapse into
one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PENDING = sa.text("status IN ('scheduled', 'deferred')")

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION orderbell_notify_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM inserted_messages
        WHERE status IN ('scheduled', 'deferred')
          AND due_at <= clock_timestamp() + interval '1 second'
    ) THEN
        PERFORM pg_notify('orderbell_due', '');
    END IF;
    RETURN NULL;
END
$$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER messages_notify_due
AFTER INSERT ON messages
REFERENCING NEW TABLE AS inserted_messages
FOR EACH STATEMENT EXECUTE FUNCTION orderbell_notify_due()
"""


def upgrade() -> None:
    op.create_index(
        "ix_messages_pending_category_due",
        "messages",
        ["category", "due_at"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS messages_notify_due ON messages")
        op.execute("DROP FUNCTION IF EXISTS orderbell_notify_due()")
    op.drop_index("ix_messages_pending_category_due", table_name="messages")
