"""e-mail prices for one country: removed

Revision ID: 0013
Revises: 0012

An e-mail has no destination country, so it is priced by the "*" line of its channel only.
A price list could take an e-mail line for one country until such lines were refused; any
stored was never charged (it only showed in the list), and made a shop's list one the API
and `orderbell credits price` refuse to write back. Those lines go; "*" lines stay.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM prices WHERE channel = 'email' AND country <> '*'"))


def downgrade() -> None:
    """Nothing to restore: the lines removed were never charged."""
