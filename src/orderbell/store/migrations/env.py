"""Alembic environment: runs on the connection handed in by orderbell.store.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from orderbell.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def run() -> None:
    """Run migrations online, on a given connection or a fresh engine."""
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
