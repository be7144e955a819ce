"""held messages: an index of their own

Revision ID: 0012
Revises: 0011

A top-up, a raised cap and the worker's look at held messages every 30 seconds read a
shop's held messages oldest first; without this partial index each read walked every
message the shop ever had (and finding the shops holding any, every message).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    held = sa.text("status = 'held'")
    op.create_index(
        "ix_messages_held_shop_due",
        "messages",
        ["shop_id", "due_at", "id"],
        unique=False,
        sqlite_where=held,
        postgresql_where=held,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_held_shop_due", table_name="messages")
