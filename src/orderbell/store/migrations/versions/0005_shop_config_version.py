"""shops.config_version: a counter bumped by every configuration change of a shop

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 07:40:00.000000

The ingest path caches a shop's rules, templates and prices per process and re-reads them
only when this number moves: one indexed read per event instead of four queries and the
parsing of every rule.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("config_version", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("config_version")
