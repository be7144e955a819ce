"""accepted events: an event may be stored before its messages are planned

Revision ID: 0008
Revises: 0007

``POST /v1/events`` with ``Prefer: respond-async`` stores the event durably and answers 202;
a worker plans its messages afterwards. ``events.planned_at`` is NULL while an event waits
for that; every event stored before this migration was planned when it was received. A
partial index keeps the waiting ones cheap to find, and on PostgreSQL an insert of a waiting
event sends ``NOTIFY orderbell_due`` like a due message does, so idle workers wake at once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orderbell.store.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WAITING = sa.text("planned_at IS NULL")

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION orderbell_notify_accepted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted_events WHERE planned_at IS NULL) THEN
        PERFORM pg_notify('orderbell_due', '');
    END IF;
    RETURN NULL;
END
$$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER events_notify_accepted
AFTER INSERT ON events
REFERENCING NEW TABLE AS inserted_events
FOR EACH STATEMENT EXECUTE FUNCTION orderbell_notify_accepted()
"""


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "planned_at", orderbell.store.schema.UtcDateTime(timezone=True), nullable=True
            )
        )
    op.execute("UPDATE events SET planned_at = received_at")
    op.create_index(
        "ix_events_waiting", "events", ["id"], sqlite_where=WAITING, postgresql_where=WAITING
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_notify_accepted ON events")
        op.execute("DROP FUNCTION IF EXISTS orderbell_notify_accepted()")
    op.drop_index("ix_events_waiting", table_name="events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("planned_at")
